"""A whole afterimage on one machine for end-to-end tests: the simulator as the providers,
the real receiver over HTTP, real worker and poller processes, Redis, and SeaweedFS (S3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx

from afterimage import redis_client
from afterimage.settings import Settings
from afterimage.simulator import run_simulator
from afterimage.simulator.server import RunningSimulator
from afterimage.storage.probe import PROBE
from afterimage.tokens import callback_url
from receiver import create_app
from tests.support import ServerThread, clean_env, free_port, wait_for

SECRET = "stack-secret"
PROBE_KEY = f"archive/{PROBE}"  # written by every worker at start (afterimage.storage.probe)
TOKEN = "stack-token"


class Stack:
    def __init__(self, redis_url: str, s3_url: str, bucket: str, tmp: Path,
                 sim: RunningSimulator, env: dict[str, str]) -> None:
        self.redis_url, self.s3_url, self.bucket, self.tmp = redis_url, s3_url, bucket, tmp
        self.sim = sim
        self.env = env
        self.settings = Settings.from_env(env)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.db = redis_client.connect(self.settings)
        self.s3 = boto3.client("s3", endpoint_url=s3_url)
        self.api = httpx.Client(base_url=self.settings.public_url,
                                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def callback_url(self, provider: str) -> str:
        return callback_url(self.settings.public_url, SECRET, provider)

    def start(self, role: str, *args: str, name: str | None = None) -> subprocess.Popen[bytes]:
        """Run `afterimage ROLE` as a child process (logs in the test's tmp dir)."""
        name = name or role
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "afterimage", role, *args],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def stop(self, name: str, kill: bool = False) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        proc.wait(30)

    def task(self, provider: str, task_id: str) -> dict[str, Any]:
        r = self.api.get(f"/v1/tasks/{provider}/{task_id}")
        return r.json() if r.status_code == 200 else {"state": None}

    def wait_state(self, provider: str, task_id: str, state: str,
                   timeout: float = 30) -> dict[str, Any]:
        return wait_for(lambda: (t := self.task(provider, task_id))["state"] == state and t,
                        timeout, f"{provider} {task_id} to be {state}")

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """Archived objects (not the workers' start-up probe) and their bytes."""
        found = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"]: self.s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read()
                for o in found if o["Key"] != PROBE_KEY}

    def versions(self, prefix: str = "") -> list[str]:
        listed = self.s3.list_object_versions(Bucket=self.bucket, Prefix=prefix)
        return [v["Key"] for v in listed.get("Versions", []) if v["Key"] != PROBE_KEY]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.tmp.glob("*.log")))


@contextmanager
def running_stack(redis_url: str, s3_url: str, bucket: str, tmp: Path, *,
                  keys: bool = True, allow_loopback: bool = True, workers: int = 1,
                  poller: bool = False, sim_options: dict[str, Any] | None = None,
                  extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Start everything; stop everything after, printing the children's logs on failure."""
    sim = run_simulator(**{"delay": 0.0, **(sim_options or {})})
    port = free_port()
    env = clean_env()
    env.update({
        "AFTERIMAGE_REDIS_URL": redis_url,
        "AFTERIMAGE_STORAGE_URL": f"s3://{bucket}/archive",
        "AFTERIMAGE_S3_ENDPOINT_URL": s3_url,
        "AFTERIMAGE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "AFTERIMAGE_PORT": str(port),
        "AFTERIMAGE_SECRET": SECRET,
        "AFTERIMAGE_API_TOKEN": TOKEN,
        "AFTERIMAGE_DATA_DIR": str(tmp / "data"),
        "AFTERIMAGE_LOG_LEVEL": "INFO",
        "AFTERIMAGE_ARCHIVE_RETRIES": "3",
    })
    if allow_loopback:
        env["AFTERIMAGE_DOWNLOAD_ALLOW_CIDRS"] = "127.0.0.0/8"
    for key, value in sim.env().items():
        env[key] = value
        if keys and key.endswith("_BASE_URL"):
            env[key.replace("_BASE_URL", "_API_KEY")] = "sim-key"
    env.update(extra_env or {})
    stack = Stack(redis_url, s3_url, bucket, tmp, sim, env)
    receiver = ServerThread(create_app(stack.settings), port=port)
    try:
        with receiver:
            for i in range(workers):
                stack.start("worker", "--name", f"w{i}-{os.getpid()}", name=f"worker{i}")
            if poller:
                stack.start("poller")
            yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        for name in list(stack.procs):
            stack.stop(name)
        sim.stop()
