"""No secret in any log line: one full run of `afterimage up` (receiver with uvicorn's own logs,
workers, poller, `up` itself) at DEBUG, with good and refused callbacks, polls, archives,
failed downloads and signed links, and every line of every process searched for every secret
the run used."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pty
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from afterimage.logs import JsonFormatter, Redactor
from afterimage.providers import ADAPTERS
from afterimage.simulator import run_simulator
from afterimage.tokens import callback_token, webhook_secret
from tests.faults.upproc import Up, up_env
from tests.support import MotoServer, free_port, wait_for

KEYS = {p: f"sk-{p}-{secrets.token_hex(12)}" for p in ADAPTERS}
KIE_HMAC = f"kie-hmac-{secrets.token_hex(12)}"
SECRET = f"secret-{secrets.token_hex(12)}"
API_TOKEN = f"api-{secrets.token_hex(12)}"
NOTIFY_SECRET = f"notify-{secrets.token_hex(12)}"
BAD_KIE_SIGNATURE_KEY = "wrong-key-123"


def test_the_redactor_takes_out_tokens_queries_and_known_values() -> None:
    redact = Redactor(["sk-abcdefgh12", "short"])
    line = redact("POST /callbacks/evolink/AbC-12_x -> 401 bad token; GET /ops?token=zzz and "
                  "https://cdn.example/x.png?sig=1&e=2 Bearer abcdefghijk key=sk-abcdefgh12 short")
    assert line == ("POST /callbacks/evolink/… -> 401 bad token; GET /ops?… and "
                    "https://cdn.example/x.png?… Bearer … key=… short")
    assert redact("missing or wrong bearer token") == "missing or wrong bearer token"


def kie_signature(task_id: str, timestamp: str, key: str) -> str:
    import base64

    mac = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


@pytest.fixture()
def run(tmp_path: Path, s3_server: MotoServer) -> Iterator[tuple[Up, object, Path]]:
    bucket = f"logs-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=s3_server.url).create_bucket(Bucket=bucket)
    sim = run_simulator(delay=0.2, keys=dict(KEYS), kie_webhook_key=KIE_HMAC)
    env = up_env(tmp_path / "data", sim, **{
        "AFTERIMAGE_LOG_LEVEL": "DEBUG", "AFTERIMAGE_SECRET": SECRET,
        "AFTERIMAGE_API_TOKEN": API_TOKEN, "AFTERIMAGE_KIE_WEBHOOK_HMAC_KEY": KIE_HMAC,
        "AFTERIMAGE_STORAGE_URL": f"s3://{bucket}/archive",
        "AFTERIMAGE_S3_ENDPOINT_URL": s3_server.url, "AFTERIMAGE_POLL_SCALE": "0.02",
        "AFTERIMAGE_ARCHIVE_RETRIES": "0", "AFTERIMAGE_NOTIFY_SECRET": NOTIFY_SECRET,
        "AFTERIMAGE_NOTIFY_URL": f"http://127.0.0.1:{free_port()}/events",  # nobody listens
        **{f"AFTERIMAGE_{p.upper()}_API_KEY": k for p, k in KEYS.items()},
    })
    log = tmp_path / "up.log"
    up = Up(env, log)
    up.api.headers["Authorization"] = f"Bearer {API_TOKEN}"  # ours, not the one up keeps
    try:
        yield up, sim, log
    finally:
        up.stop()
        sim.stop()


def test_no_secret_reaches_any_log_line(run: tuple[Up, object, Path]) -> None:
    up, sim, log = run
    from afterimage.simulator.server import RunningSimulator

    assert isinstance(sim, RunningSimulator)
    callbacks = {p: up.callback_url(p) for p in ADAPTERS if ADAPTERS[p].has_callbacks}
    tasks: list[tuple[str, str]] = []
    for provider, url in callbacks.items():  # good callbacks, signed or confirmed by a query
        made = sim.create_task(provider, callback_url=url, model="fal-ai/flux/dev",
                               webhook_secret=webhook_secret(SECRET, provider))
        tasks.append((provider, made["id"]))
    for provider in ("apimart", "toapis"):  # polls
        made = sim.create_task(provider)
        assert up.api.post("/v1/tasks", json={"provider": provider,
                                              "task_id": made["id"]}).status_code == 201
        tasks.append((provider, made["id"]))
    for provider, task_id in tasks:
        wait_for(lambda p=provider, t=task_id: up.task(p, t)["state"] == "archived", 40,
                 f"{provider} {task_id} archived")

    sim.set_faults("evolink", truncate=1.0)  # a failed archive logs its (signed) link
    broken = sim.create_task("evolink", callback_url=callbacks["evolink"])["id"]
    wait_for(lambda: up.task("evolink", broken)["state"] == "archive_failed", 40, "a failure")
    sim.set_faults("evolink", truncate=0.0)

    refused = {  # each of these is answered 4xx and logged
        "wrong token": httpx.post(callbacks["evolink"].rsplit("/", 1)[0] + "/" + "x" * 32,
                                  json={"id": "t"}),
        "unknown provider": httpx.post(f"{up.url}/callbacks/nosuch/{'y' * 32}", json={}),
        "not JSON": httpx.post(callbacks["crun"], content=b"{nope",
                               headers={"Content-Type": "application/json"}),
        "unreadable": httpx.post(callbacks["evolink"], json={"no": "id"}),
        "bad kie signature": httpx.post(
            callbacks["kie"], json={"code": 200, "data": {"taskId": "k1", "state": "success"}},
            headers={"X-Webhook-Timestamp": str(int(time.time())),
                     "X-Webhook-Signature": kie_signature("k1", "1", BAD_KIE_SIGNATURE_KEY)}),
        "wrong bearer": httpx.get(f"{up.url}/v1/tasks", headers={"Authorization": "Bearer no"}),
        "ops, wrong token": httpx.get(f"{up.url}/ops?token=wrong-token-1234"),
        "ops, right token": httpx.get(f"{up.url}/ops?token={API_TOKEN}"),
    }
    assert all(r.status_code >= 400 for k, r in refused.items() if k != "ops, right token")
    up.stop()

    text = log.read_text()
    # the run logged what it should have: debug lines, uvicorn's access log, refusals, polls
    lines = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    assert any(x["level"] == "debug" for x in lines)
    assert any(x["logger"] == "uvicorn.access" for x in lines)
    assert any("/callbacks/evolink/…" in x["msg"] for x in lines)
    assert any(x["logger"].startswith("afterimage.poller") for x in lines)
    assert any(x.get("event") == "archive_failed" for x in lines)

    used = [SECRET, API_TOKEN, KIE_HMAC, NOTIFY_SECRET, *KEYS.values(),
            sim.context.config.replicate_webhook_secret, webhook_secret(SECRET, "bfl"),
            kie_signature("k1", "1", BAD_KIE_SIGNATURE_KEY),
            *(callback_token(SECRET, p) for p in ADAPTERS)]
    for provider, task_id in [*tasks, ("evolink", broken)]:
        for url in sim.task(provider, task_id)["image_urls"]:
            query = url.split("?", 1)[1]
            used += [query, *re.findall(r"=([^&]{6,})", query)]
    found = [s for s in used if s in text]
    assert not found, f"secrets in the log: {found}"


def test_up_shows_a_token_it_made_only_on_a_terminal(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERIMAGE_")}
    env.update(AFTERIMAGE_DATA_DIR=str(tmp_path / "data"), AFTERIMAGE_PORT="0")

    def first_lines(stdout: int | None) -> str:
        """What `up` prints before it settles down, read up to the 'receiver on' line."""
        if stdout is None:
            master, slave = pty.openpty()
            proc = subprocess.Popen([sys.executable, "-m", "afterimage", "up", "--workers", "0",
                                     "--no-poller"], env=env, stdout=slave,
                                    stderr=subprocess.DEVNULL)
            os.close(slave)
            out = b""
            while b"receiver on" not in out:
                out += os.read(master, 4096)
            os.close(master)
        else:
            proc = subprocess.Popen([sys.executable, "-m", "afterimage", "up", "--workers", "0",
                                     "--no-poller"], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
            assert proc.stdout is not None
            out = b""
            while b"receiver on" not in out:
                line = proc.stdout.readline()
                assert line, f"up ended early: {out!r}"
                out += line
        proc.terminate()
        proc.wait(30)
        return out.decode()

    kept = tmp_path / "data" / "secrets.json"
    on_terminal = first_lines(None)
    token = json.loads(kept.read_text())["api_token"]
    assert f"API token: {token}" in on_terminal
    assert "/callbacks/evolink/" in on_terminal
    piped = first_lines(subprocess.PIPE)
    assert token not in piped and "/callbacks/" not in piped
    assert "shown only on a terminal" in piped
    env["AFTERIMAGE_API_TOKEN"] = "from-the-environment-123"
    from_env = first_lines(None)
    assert "from-the-environment-123" not in from_env
    assert "API token: the one in AFTERIMAGE_API_TOKEN" in from_env


def test_the_formatter_leaves_out_configured_secrets() -> None:
    import logging

    record = logging.LogRecord("t", logging.DEBUG, __file__, 1, "key %s", (KEYS["crun"],), None)
    assert KEYS["crun"] not in JsonFormatter(KEYS.values()).format(record)
