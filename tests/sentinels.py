"""A real Redis Sentinel setup for tests: a primary, a replica and three sentinels (Debian's
redis-sentinel), each on a free port with its own data dir and writable config file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import redis

from tests.support import RedisServer, free_port, port_open, wait_for

SERVICE = "mymaster"


class Node(RedisServer):
    """One redis-server (append-only, fsync always), a primary or a replica of `primary`."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, fsync="always")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def info(self, section: str) -> dict[str, Any]:
        with self.client() as c:
            found: dict[str, Any] = c.info(section)
            return found


class SentinelProc:
    """One redis-sentinel watching SERVICE, with a config file it may rewrite."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, primary: int) -> SentinelProc:
        exe = shutil.which("redis-sentinel")
        assert exe, "redis-sentinel is not installed (apt-get install redis-sentinel)"
        self.home.mkdir(parents=True, exist_ok=True)
        conf = self.home / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\n"
            f"dir {self.home}\nlogfile {self.home / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n")
        self.proc = subprocess.Popen([exe, str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 10, f"redis-sentinel on {self.port} to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def master(self) -> dict[str, Any]:
        with redis.Redis(port=self.port, socket_timeout=5, decode_responses=True) as c:
            found: dict[str, Any] = c.sentinel_master(SERVICE)
            return found


class SentinelCluster:
    """Primary `a`, replica `b`, three sentinels (quorum 2). `url` is afterimage's."""

    def __init__(self, tmp: Path) -> None:
        self.a = Node(tmp / "redis-a")
        self.b = Node(tmp / "redis-b")
        self.sentinels = [SentinelProc(tmp / f"sentinel-{i}") for i in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> SentinelCluster:
        self.a.start()
        self.b.start(primary=self.a.port)
        wait_for(lambda: self.b.info("replication").get("master_link_status") == "up", 20,
                 "the replica to sync")
        for s in self.sentinels:
            s.start(self.a.port)
        wait_for(lambda: all(self._sees_everyone(s) for s in self.sentinels), 30,
                 "every sentinel to know the replica and the other sentinels")
        return self

    def _sees_everyone(self, s: SentinelProc) -> bool:
        m = s.master()
        return int(m["num-slaves"]) == 1 and int(m["num-other-sentinels"]) == 2

    def primary_port(self) -> int:
        """The primary's port as the sentinels agree on it."""
        ports = {int(s.master()["port"]) for s in self.sentinels}
        assert len(ports) == 1, f"the sentinels disagree: {ports}"
        return ports.pop()

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        self.a.stop()
        self.b.stop()

    def logs(self) -> str:
        paths = [self.a.data_dir / "redis.log", self.b.data_dir / "redis.log",
                 *(s.home / "sentinel.log" for s in self.sentinels)]
        return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}"
                         for p in paths if p.exists())
