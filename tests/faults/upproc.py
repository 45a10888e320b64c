"""`afterimage up` as a real process group, for killing it whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from afterimage.simulator.server import RunningSimulator
from tests.support import free_port, wait_for


def up_env(data: Path, sim: RunningSimulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERIMAGE_")}
    port = free_port()
    env.update({
        "AFTERIMAGE_DATA_DIR": str(data),
        "AFTERIMAGE_PORT": str(port),
        "AFTERIMAGE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "AFTERIMAGE_DOWNLOAD_ALLOW_CIDRS": "127.0.0.0/8",
        "AFTERIMAGE_ARCHIVE_RETRIES": "3",
        "AFTERIMAGE_LOG_LEVEL": "INFO",
    })
    for key, value in sim.env().items():
        env[key] = value
        if key.endswith("_BASE_URL"):
            env[key.replace("_BASE_URL", "_API_KEY")] = "sim-key"
    env.update(extra)
    return env


class Up:
    """One run of `afterimage up --workers 2` in its own process group."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.url = env["AFTERIMAGE_PUBLIC_URL"]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "afterimage", "up", "--workers", "2"], env=env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pgid = self.proc.pid
        wait_for(self._ready, 30, "afterimage up to answer")
        secrets = json.loads((Path(env["AFTERIMAGE_DATA_DIR"]) / "secrets.json").read_text())
        self.api = httpx.Client(base_url=self.url, timeout=10,
                                headers={"Authorization": f"Bearer {secrets['api_token']}"})

    def _ready(self) -> bool:
        assert self.proc.poll() is None, "afterimage up exited"
        return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200

    def callback_url(self, provider: str) -> str:
        url: str = self.api.get(f"/v1/providers/{provider}/callback-url").json()["callback_url"]
        return url

    def task(self, provider: str, task_id: str) -> dict[str, Any]:
        reply = self.api.get(f"/v1/tasks/{provider}/{task_id}")
        return reply.json() if reply.status_code == 200 else {"state": None}

    def kill(self, whole_group: bool = True) -> None:
        """SIGKILL every process of this run at once (or only `up` itself) and wait until
        none is left."""
        if whole_group:
            os.killpg(self.pgid, signal.SIGKILL)
        else:
            self.proc.kill()
        self.proc.wait(10)
        wait_for(lambda: not group_members(self.pgid), 15, "every process of the group to end")
        self.api.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        self.api.close()


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group `pgid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(int(text.split(" ", 1)[0]))
    return found
