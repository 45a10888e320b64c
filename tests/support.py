"""Test plumbing: free ports, real servers in subprocesses, waiting on conditions."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:
            last_exc = exc
        else:
            if value:
                return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_exc!r}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RedisServer:
    """A real redis-server on a free port, with append-only persistence in `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None, fsync: str = "everysec") -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.fsync = fsync  # "always": an acknowledged write survives kill -9
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, primary: int | None = None) -> RedisServer:
        """Start it; with `primary`, as a replica of the redis-server on that port."""
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed (apt-get install redis-server)"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                "--appendonly", "yes", "--appendfsync", self.fsync, "--save", "",
                "--protected-mode", "no", "--logfile", str(self.data_dir / "redis.log")]
        if primary is not None:
            args += ["--replicaof", "127.0.0.1", str(primary)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 10, "redis-server to listen")
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(10)
        self.proc = None


class MotoServer:
    """moto's standalone S3-protocol server over real HTTP."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        exe = VENV_BIN / "moto_server"
        self.proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env(),
        )
        wait_for(lambda: port_open(self.port), 20, "moto_server to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


AWS_TEST = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}


def aws_env() -> dict[str, str]:
    """The test credentials for the S3-protocol server, and nothing else."""
    return dict(AWS_TEST)


def clean_env() -> dict[str, str]:
    """The caller's environment without a single AFTERIMAGE_* setting, with the test AWS
    credentials: what every process under test starts from, whatever the shell exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERIMAGE_")}
    env.update(AWS_TEST)
    return env


class ServerThread:
    """A real uvicorn server for an ASGI app, on a free port, in a background thread."""

    def __init__(self, app: object, port: int | None = None) -> None:
        import threading

        import uvicorn

        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", ws="none")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started, 10, "uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
