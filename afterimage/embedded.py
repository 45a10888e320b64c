"""`afterimage up`'s embedded parts: the data dir's secrets and a local redis-server."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import redis

from afterimage import redis_client
from afterimage.errors import ConfigError
from afterimage.settings import Settings
from afterimage.supervisor import die_with_parent

INSTALL_HINT = "install it with: sudo apt-get install -y redis-server"


def load_or_create_secrets(data_dir: Path) -> dict[str, str]:
    """The callback secret and API token kept in the data dir (made on first run, mode 0600)."""
    path = data_dir / "secrets.json"
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
        return data
    data = {"secret": secrets.token_urlsafe(32), "api_token": secrets.token_urlsafe(24)}
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return data


def socket_path(data_dir: Path) -> Path:
    return data_dir / "redis" / "redis.sock"


def redis_url(data_dir: Path) -> str:
    return f"unix://{socket_path(data_dir)}"


def start_redis(data_dir: Path) -> subprocess.Popen[bytes]:
    """A redis-server with append-only persistence in the data dir, on a unix socket."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise ConfigError(f"redis-server was not found on PATH; {INSTALL_HINT}")
    home = data_dir / "redis"
    home.mkdir(parents=True, exist_ok=True)
    _no_other_redis(home / "redis.pid")
    sock = socket_path(data_dir)
    proc = subprocess.Popen(
        [exe, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--dir", str(home), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
         "--logfile", str(home / "redis.log"), "--pidfile", str(home / "redis.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent(),
    )
    client = redis_client.connect(Settings(redis_url=redis_url(data_dir)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"redis-server exited at start; see {home / 'redis.log'}")
        try:
            if client.ping():
                return proc
        except (redis.ConnectionError, redis.BusyLoadingError):
            time.sleep(0.05)
    proc.kill()
    raise ConfigError(f"redis-server did not answer within 30 s; see {home / 'redis.log'}")


def _no_other_redis(pidfile: Path, wait: float = 10.0) -> None:
    """Two redis-servers must never share the data dir (the second would unlink the first's
    socket and both would write the append-only log). One that is dying is waited for."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + wait
    while _is_redis(pid):
        if time.monotonic() > deadline:
            raise ConfigError(f"redis-server (pid {pid}) is already running on "
                              f"{pidfile.parent}: is another afterimage up using this data dir?")
        time.sleep(0.1)


def _is_redis(pid: int) -> bool:
    """Whether `pid` is a live redis-server (by /proc; without it, whether `pid` lives)."""
    if not Path("/proc/self").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it lives, as another user's process
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm, state = stat[stat.find("(") + 1:stat.rfind(")")], stat[stat.rfind(")") + 2:][:1]
    return "redis" in comm and state not in ("Z", "X")
