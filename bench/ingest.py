"""Benchmark 1 — callback ingest: the real receiver against a bare Starlette app, with wrk.

Every app is served by the same launcher (bench/apps.py: uvicorn, uvloop, httptools, the
receiver's options) with the same number of worker processes, and loaded by the same wrk
command: 64 connections, a ~1 KB evolink callback with a distinct task id per request
(bench/wrk/callbacks.lua). After each receiver run the task records and inbox entries in
Redis are counted against wrk's 2xx answers: every acknowledged callback must be there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from afterimage.tokens import callback_token
from bench.common import (
    PY,
    ROOT,
    SECRET,
    Proc,
    Results,
    Row,
    free_port,
    port_open,
    redis_server,
    stack_env,
    wait_for,
)

CONNECTIONS = 64
WRK_THREADS = 2
P99_TARGET_MS = 25.0


def callback_template() -> bytes:
    """A completed evolink task as its callback carries it (~1 KB), __ID__ for the task id."""
    url = ("https://files.evolink.ai/generated/2025/11/21/gpt-image-2/"
           "5f0c8e2a-3b7d-4c1e-9a6f-0d2b4e8c7a91.png?Expires=1763828400"
           "&OSSAccessKeyId=LTAI5tQ7xR2mN8vK4pW9sBzE&Signature=Yh3kP%2B9qLm2vX7nR4tW8zA1cE5o%3D"
           "&x-oss-process=image%2Fformat%2Cpng&response-content-disposition=inline")
    body = {
        "created": 1763742000,
        "id": "__ID__",
        "model": "gpt-image-2",
        "object": "image.generation.task",
        "progress": 100,
        "status": "completed",
        "results": [url],
        "task_info": {"can_cancel": False, "estimated_time": 0},
        "type": "image",
        "usage": {"billing_rule": "per_call", "credits_reserved": 4, "credits_used": 4,
                  "user_group": "default"},
        "prompt": "A lighthouse on a basalt cliff at dusk, long exposure, waves blurred into "
                  "mist, warm light from the lantern room, cold blue sky, 35mm photograph, "
                  "high detail, no people, no text.",
        "size": "1024x1024",
        "quality": "high",
        "output_format": "png",
        "finished_at": 1763742042,
    }
    return json.dumps(body, indent=1).encode()


def run_wrk(url: str, template: Path, seconds: float, run_id: str) -> dict[str, Any]:
    cmd = ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s",
           "--timeout", "5s", "-s", str(ROOT / "bench" / "wrk" / "callbacks.lua"), url, "--",
           str(template), run_id]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            got: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            errors = sum(got[k] for k in ("connect", "read", "write", "timeout"))
            got["errors"] = errors + got["status"]
            got["ok"] = got["requests"] - got["status"]
            got["rps"] = got["requests"] / (got["duration_us"] / 1e6)
            return got
    raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")


class Served:
    """One app under uvicorn in its own process group."""

    def __init__(self, app: str, workers: int, env: dict[str, str], log_dir: Path,
                 port: int) -> None:
        self.port = port
        self.proc = Proc(f"serve-{app.split(':')[-1]}-{workers}",
                         [PY, "-m", "bench.apps", app, "--port", str(port),
                          "--workers", str(workers)], log_dir, env)
        try:
            wait_for(lambda: port_open(port) or not self.proc.alive(), 30, f"{app} to listen")
        except AssertionError:
            self.proc.stop()
            raise
        if not self.proc.alive():
            raise RuntimeError(f"{app} did not start:\n{self.proc.tail()}")
        time.sleep(0.5 * workers)  # every worker process has started its event loop

    def stop(self) -> None:
        self.proc.stop()


def measure(app: str, workers: int, env: dict[str, str], log_dir: Path, template: Path,
            seconds: float, warmup: float, redis_client: Any = None) -> dict[str, Any]:
    port = env_port = free_port()
    env = {**env, "AFTERIMAGE_PORT": str(env_port)}
    token = callback_token(SECRET, "evolink")
    url = f"http://127.0.0.1:{port}/callbacks/evolink/{token}"
    served = Served(app, workers, env, log_dir, port)
    try:
        if warmup:
            run_wrk(url, template, warmup, "warm" + uuid.uuid4().hex[:6])
            time.sleep(0.3)
        if redis_client is not None:
            redis_client.flushall()
        got = run_wrk(url, template, seconds, uuid.uuid4().hex[:8])
        time.sleep(0.3)  # requests wrk gave up on at its end may still land; they only add
    finally:
        served.stop()
    if redis_client is not None:
        got["tasks"] = int(redis_client.zcard("ai:s:queued:evolink"))
        got["inbox"] = int(redis_client.xlen("ai:inbox"))
    return got


def measure_replicated(work: Path, logs: Path, template: Path, seconds: float,
                       warmup: float) -> dict[str, Any]:
    """The receiver with AFTERIMAGE_REDIS_MIN_REPLICAS=1: each acknowledgement waits until a
    replica holds the write. Counted on the replica: every 2xx must be there."""
    primary_port = free_port()
    with redis_server(work / "redis-primary", "always", port=primary_port) as primary, \
            redis_server(work / "redis-replica", "always", port=free_port(),
                         replicaof=primary_port) as replica:
        wait_for(lambda: replica.client.info("replication").get("master_link_status") == "up",
                 30, "the replica to sync")
        env = stack_env(primary.url, extra={"AFTERIMAGE_EVOLINK_API_KEY": "sim-key",
                                            "AFTERIMAGE_REDIS_MIN_REPLICAS": "1"})
        got = measure("receiver.app:app_from_env", 1, env, logs, template, seconds, warmup,
                      primary.client)
        got["tasks"] = int(replica.client.zcard("ai:s:queued:evolink"))
        got["inbox"] = int(replica.client.xlen("ai:inbox"))
        return got


def run(results: Results, work: Path, smoke: bool) -> None:
    if shutil.which("wrk") is None:
        results.add(Row("ingest", "wrk is not installed (bench/setup)", 0, "", ok=False))
        return
    seconds, warmup = (1.0, 0.0) if smoke else (10.0, 2.0)
    worker_counts = (1,) if smoke else (1, 2)
    fsyncs = ("always",) if smoke else ("always", "everysec")
    template = work / "callback.json"
    template.write_bytes(callback_template())
    logs = Path(tempfile.mkdtemp(prefix="ingest-", dir=work))
    with ExitStack() as stack:
        servers = {f: stack.enter_context(redis_server(work / f"redis-{f}", f)) for f in fsyncs}
        envs = {f: stack_env(r.url, extra={"AFTERIMAGE_EVOLINK_API_KEY": "sim-key"})
                for f, r in servers.items()}
        for workers in worker_counts:
            # The bare app before and after the receiver's runs, its rate their mean: the
            # VM's speed drifts over minutes, and this way it weighs on both sides alike.
            runs = [measure("bench.apps:bare_app", workers, stack_env("unix:///nonexistent"),
                            logs, template, seconds, warmup)]
            ours = {f: measure("receiver.app:app_from_env", workers, envs[f], logs, template,
                               seconds, warmup, servers[f].client) for f in fsyncs}
            extra = replicated = None
            if workers == 1:
                extra = measure("bench.apps:enqueue_in_request_app", 1, envs["always"], logs,
                                template, seconds, warmup, servers["always"].client)
                replicated = measure_replicated(work, logs, template, seconds, warmup)
            runs.append(measure("bench.apps:bare_app", workers, stack_env("unix:///nonexistent"),
                                logs, template, seconds, warmup))
            rates = [r["rps"] for r in runs]
            bare = sum(rates) / len(rates)
            results.add(Row(
                "ingest", f"bare Starlette, {workers} worker(s)", bare, "req/s",
                note=f"mean of {rates[0]:,.0f} before and {rates[1]:,.0f} after; p99 "
                     f"{max(r['p99_us'] for r in runs) / 1000:.1f} ms, "
                     f"errors {sum(r['errors'] for r in runs)}", extra={"runs": runs}))
            for fsync, got in ours.items():
                ratio = got["rps"] / bare
                p99 = got["p99_us"] / 1000
                lost = got["ok"] - min(got["tasks"], got["inbox"])
                ok = (ratio >= 0.5 and p99 <= P99_TARGET_MS and got["errors"] == 0
                      and lost <= 0)
                results.add(Row(
                    "ingest", f"receiver, fsync {fsync}, {workers} worker(s)", got["rps"],
                    "req/s", ratio, "≥0.5x p99≤25", ok,
                    f"p99 {p99:.1f} ms, errors {got['errors']}, 2xx {got['ok']}, "
                    f"in Redis {got['tasks']} tasks/{got['inbox']} inbox", got))
            if replicated is not None:
                results.add(Row(
                    "ingest", "receiver, fsync always, MIN_REPLICAS=1, 1 worker(s)",
                    replicated["rps"], "req/s", replicated["rps"] / bare,
                    note=f"p99 {replicated['p99_us'] / 1000:.1f} ms, errors "
                         f"{replicated['errors']}, 2xx {replicated['ok']}, on the replica "
                         f"{replicated['tasks']} tasks/{replicated['inbox']} inbox (WAIT 1 "
                         f"after each script call; one replica on the same machine)",
                    extra=replicated))
            if extra is not None:
                results.add(Row(
                    "ingest", "receiver + RQ enqueue in request, 1 worker", extra["rps"],
                    "req/s", extra["rps"] / bare, note=f"p99 {extra['p99_us'] / 1000:.1f} ms, "
                    f"errors {extra['errors']}, fsync always (the design the inbox replaced)",
                    extra=extra))
