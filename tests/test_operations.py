"""Task operations (afterimage/operations.py) as the API, /ops and the CLI reach them: the
same checks and the same outcomes, over real HTTP and a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner, Result

from afterimage import keys
from afterimage.cli import main
from afterimage.ledger import Ledger, move_args
from afterimage.models import TaskState
from afterimage.operations import MAX_REPLAY_LIMIT
from receiver import create_app
from tests.receiver.test_callbacks import SECRET, settings_for
from tests.support import ServerThread

AUTH = {"Authorization": "Bearer api-token"}
BAD_IDS = ["..", "a\x01b", "x" * 300]


@pytest.fixture()
def api(redis_url: str) -> Iterator[httpx.Client]:
    app = create_app(settings_for(redis_url), check_storage=False)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, headers=AUTH) as client:
        yield client


def cli(redis_url: str, tmp_path: Path, *args: str) -> Result:
    env = {"AFTERIMAGE_REDIS_URL": redis_url, "AFTERIMAGE_DATA_DIR": str(tmp_path)}
    return CliRunner().invoke(main, list(args), env=env)


def task_in(redis_url: str, provider: str, task_id: str, state: TaskState) -> None:
    ledger = Ledger(redis.Redis.from_url(redis_url))
    err = json.dumps({"code": "download_interrupted", "message": "cut"})
    assert ledger.move(move_args(provider, task_id, state, allowed="none",
                                 fields={"err": err})).ok


def state_of(redis_url: str, provider: str, task_id: str) -> str:
    raw = redis.Redis.from_url(redis_url).hget(keys.task(provider, task_id), "st")
    return raw.decode() if raw else ""


@pytest.mark.parametrize("task_id", BAD_IDS)
def test_a_task_id_that_cannot_name_a_task_is_refused_everywhere(
    api: httpx.Client, redis_url: str, tmp_path: Path, task_id: str
) -> None:
    every_byte = "".join(f"%{b:02X}" for b in task_id.encode())  # no dot segment to resolve
    r = api.post(f"/v1/tasks/evolink/{every_byte}/replay")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request"), r.text
    tracked = api.post("/v1/tasks", json={"provider": "evolink", "task_id": task_id})
    assert tracked.status_code == 422
    by_cli = cli(redis_url, tmp_path, "replay", "evolink", task_id)
    assert by_cli.exit_code == 2 and "task_id" in by_cli.output
    ops = api.post("/ops/replay", data={"provider": "evolink", "task_id": task_id},
                   follow_redirects=False)
    assert ops.status_code == 303 and "done=not_found" in ops.headers["location"]


def test_one_replay_answers_alike_through_the_api_ops_and_the_cli(
    api: httpx.Client, redis_url: str, tmp_path: Path
) -> None:
    for task_id in ("by-api", "by-ops", "by-cli"):
        task_in(redis_url, "evolink", task_id, TaskState.ARCHIVE_FAILED)
    task_in(redis_url, "evolink", "failed-gen", TaskState.GENERATION_FAILED)

    assert api.post("/v1/tasks/evolink/by-api/replay").json()["queued"] == ["by-api"]
    ops = api.post("/ops/replay", data={"provider": "evolink", "task_id": "by-ops"},
                   follow_redirects=False)
    assert "done=queued" in ops.headers["location"]
    by_cli = cli(redis_url, tmp_path, "replay", "evolink", "by-cli")
    assert (by_cli.exit_code, by_cli.output) == (0, "queued: evolink by-cli\n")
    assert {state_of(redis_url, "evolink", t) for t in ("by-api", "by-ops", "by-cli")} == {
        "queued"}

    again = api.post("/v1/tasks/evolink/by-api/replay")
    assert (again.status_code, again.json()["message"]) == (
        200, "already queued; its archive job is waiting or running")
    again_cli = cli(redis_url, tmp_path, "replay", "evolink", "by-api")
    assert again_cli.output == (
        "evolink by-api: already queued; its archive job is waiting or running\n")

    refused = api.post("/v1/tasks/evolink/failed-gen/replay")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "not_replayable")
    assert cli(redis_url, tmp_path, "replay", "evolink", "failed-gen").exit_code == 1
    missing = api.post("/v1/tasks/evolink/nobody/replay")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "task_not_found")
    assert cli(redis_url, tmp_path, "replay", "evolink", "nobody").exit_code == 1


def test_a_bulk_replay_queues_at_most_its_limit_across_providers(
    api: httpx.Client, redis_url: str, tmp_path: Path
) -> None:
    for i in range(3):
        task_in(redis_url, "evolink", f"e{i}", TaskState.ARCHIVE_FAILED)
        task_in(redis_url, "kie", f"k{i}", TaskState.ARCHIVE_FAILED)
    r = api.post("/v1/replay", json={"state": "archive_failed", "limit": 4})
    assert r.status_code == 202
    assert len(r.json()["queued"]) == 4
    done = cli(redis_url, tmp_path, "replay", "--state", "archive_failed", "--limit", "1")
    assert done.exit_code == 0, done.output
    assert done.output.endswith("\n1 task(s) queued\n")
    rest = cli(redis_url, tmp_path, "replay", "--state", "archive_failed")
    assert rest.output.endswith("\n1 task(s) queued\n")
    states = {state_of(redis_url, p, f"{p[0]}{i}") for p in ("evolink", "kie") for i in range(3)}
    assert states == {"queued"}


@pytest.mark.parametrize("body", [{"state": "archive_failed", "limit": 0},
                                  {"state": "archive_failed", "limit": MAX_REPLAY_LIMIT + 1},
                                  {"state": "pending"}, {"state": "archived"},
                                  {"state": "archive_failed", "since": "yesterday"}])
def test_a_bulk_replay_refuses_what_it_cannot_do(
    api: httpx.Client, redis_url: str, tmp_path: Path, body: dict[str, object]
) -> None:
    r = api.post("/v1/replay", json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request"), r.text
    args = ["replay", "--state", str(body["state"])]
    if "limit" in body:
        args += ["--limit", str(body["limit"])]
    if "since" in body:
        args += ["--since", str(body["since"])]
    assert cli(redis_url, tmp_path, *args).exit_code == 2


def test_tracking_is_the_same_through_the_api_and_the_cli(
    api: httpx.Client, redis_url: str, tmp_path: Path
) -> None:
    r = api.post("/v1/tasks", json={"provider": "evolink", "task_id": "by-api",
                                    "metadata": {"user": "u1"}})
    assert r.status_code == 201
    done = cli(redis_url, tmp_path, "track", "evolink", "by-cli", "--metadata", '{"user": "u1"}')
    assert (done.exit_code, done.output) == (0, "tracking: evolink by-cli (pending)\n")
    again = cli(redis_url, tmp_path, "track", "evolink", "by-api")
    assert again.output == "already known: evolink by-api (pending)\n"
    assert api.post("/v1/tasks", json={"provider": "evolink", "task_id": "by-cli"}).status_code \
        == 200
    db = redis.Redis.from_url(redis_url)
    for task_id in ("by-api", "by-cli"):
        assert db.zscore(keys.due("evolink"), task_id) is not None  # the poller will ask
        assert json.loads(db.hget(keys.task("evolink", task_id), "md") or b"{}") == {"user": "u1"}

    for task_id in BAD_IDS:
        assert cli(redis_url, tmp_path, "track", "evolink", task_id).exit_code == 2
    not_an_object = api.post("/v1/tasks", json={"provider": "evolink", "task_id": "m",
                                                "metadata": [1]})
    assert (not_an_object.status_code, not_an_object.json()["error"]["code"]) == (
        422, "invalid_request")
    assert cli(redis_url, tmp_path, "track", "evolink", "m", "--metadata", "[1]").exit_code == 2
    assert not db.exists(keys.task("evolink", "m"))


def test_submitting_is_the_same_through_the_api_and_the_cli(
    redis_url: str, tmp_path: Path
) -> None:
    from afterimage.providers import ADAPTERS
    from afterimage.settings import Secret
    from afterimage.simulator import run_simulator

    body = {"model": "gpt-image-2", "prompt": "a red kite", "size": "1024x1024", "n": 1}
    (tmp_path / "req.json").write_text(json.dumps(body))
    with run_simulator(delay=60.0) as sim:
        base = sim.env()["AFTERIMAGE_EVOLINK_BASE_URL"]
        settings = settings_for(
            redis_url, api_keys={"evolink": Secret("sim-key")},
            base_urls={**{n: a.default_base_url for n, a in ADAPTERS.items()}, "evolink": base})
        with ServerThread(create_app(settings, check_storage=False)) as server:
            by_api = httpx.post(f"{server.url}/v1/providers/evolink/generations", json=body,
                                headers=AUTH)
        env = {"AFTERIMAGE_REDIS_URL": redis_url, "AFTERIMAGE_DATA_DIR": str(tmp_path),
               "AFTERIMAGE_SECRET": SECRET, "AFTERIMAGE_EVOLINK_API_KEY": "sim-key",
               "AFTERIMAGE_EVOLINK_BASE_URL": base}
        by_cli = CliRunner().invoke(main, ["submit", "evolink", "--json",
                                           str(tmp_path / "req.json")], env=env)
        assert by_cli.exit_code == 0, by_cli.output
        made = [by_api.json(), json.loads(by_cli.output)]
        for reply in made:
            task_id = reply["task"]["task_id"]
            assert reply["task"]["state"] == "pending"
            assert reply["provider_response"]
            # the provider was given our callback URL, and the poller will ask if it never comes
            assert sim.task("evolink", task_id)["callback_url"].startswith(
                "http://127.0.0.1:8080/callbacks/evolink/")
            assert redis.Redis.from_url(redis_url).zscore(keys.due("evolink"), task_id)
        assert by_api.status_code == 201
