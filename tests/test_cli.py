"""The `afterimage` command as a user runs it: exit codes, one-line errors, tables and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def afterimage(*args: str, env: dict[str, str] | None = None,
               path: str | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AFTERIMAGE_")}
    if path is not None:
        base["PATH"] = path
    return subprocess.run([sys.executable, "-m", "afterimage", *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60, check=False)


def test_up_without_redis_server_says_how_to_install_it(tmp_path: Path) -> None:
    done = afterimage("up", env={"AFTERIMAGE_DATA_DIR": str(tmp_path)}, path=str(BIN))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == ("afterimage: error: redis-server was not found on PATH; "
                    "install it with: sudo apt-get install -y redis-server")


def test_bad_usage_exits_2() -> None:
    assert afterimage("tasks", "--state", "bogus").returncode == 2
    assert afterimage("replay").returncode == 2
    assert afterimage("no-such-command").returncode == 2
    for args in (("track", "nosuch", "t1"), ("callback-url", "nosuch"), ("tasks", "--provider",
                                                                         "nosuch")):
        done = afterimage(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "unknown provider 'nosuch'" in done.stderr


def test_callback_url_of_a_provider_that_never_calls_back_says_so() -> None:
    done = afterimage("callback-url", "apimart", env={"AFTERIMAGE_SECRET": "s" * 16})
    assert done.returncode == 2
    assert done.stdout == ""
    assert "apimart never calls back" in done.stderr and "afterimage track apimart" in done.stderr


def test_every_option_has_help_text() -> None:
    from afterimage.cli import main

    for name, cmd in main.commands.items():
        for param in cmd.params:
            if param.param_type_name == "option":
                assert getattr(param, "help", None), f"afterimage {name} {param.opts[0]}"
    assert "as JSON" in afterimage("status", "--help").stdout
    assert "poller" in afterimage("up", "--help").stdout.split("--poller", 1)[1]


def test_track_status_and_tasks(redis_url: str) -> None:
    env = {"AFTERIMAGE_REDIS_URL": redis_url}
    done = afterimage("track", "toapis", "task_img_1", "--metadata", '{"order": 7}', env=env)
    assert done.returncode == 0, done.stderr
    assert "tracking" in done.stdout
    again = afterimage("track", "toapis", "task_img_1", env=env)
    assert "already known" in again.stdout
    status = afterimage("status", "toapis", "task_img_1", "--json", env=env)
    task = json.loads(status.stdout)
    assert (task["state"], task["metadata"]) == ("pending", {"order": 7})
    table = afterimage("tasks", "--provider", "toapis", env=env).stdout.splitlines()
    assert table[0].split()[:3] == ["PROVIDER", "TASK", "STATE"]
    assert table[1].split()[:3] == ["toapis", "task_img_1", "pending"]
    listed = json.loads(afterimage("tasks", "--state", "pending", "--json", env=env).stdout)
    assert [t["task_id"] for t in listed] == ["task_img_1"]


def test_failures_are_one_line_on_stderr(redis_url: str) -> None:
    done = afterimage("status", "toapis", "nope", env={"AFTERIMAGE_REDIS_URL": redis_url})
    assert done.returncode == 1
    assert done.stderr.strip() == "afterimage: error: no task toapis nope"
    unknown = afterimage("status", "nosuch", "x", env={"AFTERIMAGE_REDIS_URL": redis_url})
    assert unknown.returncode == 2  # bad usage
    assert unknown.stderr.strip().startswith("afterimage: error: unknown provider 'nosuch' (one of")
    assert "\n" not in unknown.stderr.strip()


def test_callback_url_uses_the_first_secret() -> None:
    done = afterimage("callback-url", "kie", env={"AFTERIMAGE_SECRET": "new,old",
                                                  "AFTERIMAGE_PUBLIC_URL": "https://x.example"})
    from afterimage.tokens import callback_url

    assert done.stdout.strip() == callback_url("https://x.example", "new", "kie")
    from afterimage.tokens import webhook_secret

    done = afterimage("callback-url", "bfl", "--webhook-secret", env={"AFTERIMAGE_SECRET": "new"})
    assert done.stdout.strip() == webhook_secret("new", "bfl")
    assert afterimage("callback-url", "fal", "--webhook-secret",
                      env={"AFTERIMAGE_SECRET": "new"}).returncode == 2


def test_submit_and_track_take_the_model_and_polling_url(redis_url: str, tmp_path: Path) -> None:
    from afterimage.simulator import run_simulator

    with run_simulator(delay=60.0) as sim:
        env = {"AFTERIMAGE_REDIS_URL": redis_url, "AFTERIMAGE_SECRET": "s" * 16,
               **sim.env(), "AFTERIMAGE_FAL_API_KEY": "k", "AFTERIMAGE_BFL_API_KEY": "k"}
        request = tmp_path / "flux.json"
        request.write_text('{"prompt": "a red kite"}')
        done = afterimage("submit", "fal", "--model", "fal-ai/flux/dev", "--json", str(request),
                          env=env)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["task"]["state"] == "pending" and out["provider_response"]["status_url"]
        assert sim.task("fal", out["task"]["task_id"])["known"]
        done = afterimage("submit", "bfl", "--model", "flux-pro-1.1", "--json", str(request),
                          env=env)
        assert done.returncode == 0, done.stderr
        bfl = json.loads(done.stdout)["task"]["task_id"]
        assert sim.task("bfl", bfl)["known"]
        missing = afterimage("submit", "fal", "--json", str(request), env=env)
        assert missing.returncode == 2 and "model" in missing.stderr
    done = afterimage("track", "fal", "f-9", "--model", "fal-ai/flux/dev", env=env)
    assert done.returncode == 0 and "tracking" in done.stdout
    elsewhere = afterimage("track", "bfl", "b-9", "--status-url", "https://evil.example/x",
                           env=env)
    assert elsewhere.returncode == 2 and "status_url" in elsewhere.stderr
