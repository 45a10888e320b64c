"""What every benchmark shares: servers in child processes, the environment afterimage reads,
memory readings, and the rows of the results table."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
import redis

from tests.seaweed import SeaweedServer
from tests.support import MotoServer, aws_env, free_port, port_open, wait_for

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SECRET = "bench-secret"
API_TOKEN = "bench-token"
API_KEY = "sim-key"

__all__ = ["MotoServer", "free_port", "port_open", "wait_for"]


@dataclass
class Row:
    """One line of the table: a measured figure, and its ratio to the side-by-side baseline."""

    bench: str
    name: str
    value: float
    unit: str
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Results:
    def __init__(self, smoke: bool) -> None:
        self.smoke = smoke
        self.rows: list[Row] = []
        self.started = time.time()
        self.machine = machine()  # before the benchmarks load the machine

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(format_row(row), flush=True)
        return row

    def to_json(self) -> dict[str, Any]:
        return {
            "smoke": self.smoke,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "machine": self.machine,
            "rows": [asdict(r) for r in self.rows],
        }


def machine() -> dict[str, Any]:
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True).stdout.split()[2]
    wrk = shutil.which("wrk")
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu": model, "python": sys.version.split()[0],
            "redis": redis_version.removeprefix("v="), "wrk": bool(wrk), "commit": commit,
            "load_average_at_start": os.getloadavg()}


def format_row(row: Row) -> str:
    ratio = f"{row.ratio:5.2f}x" if row.ratio is not None else "      "
    verdict = {True: "ok", False: "MISS", None: ""}[row.ok]
    value = f"{row.value:,.1f}" if row.value < 1000 else f"{row.value:,.0f}"
    return (f"{row.bench:<8} {row.name:<48} {value:>10} {row.unit:<7} {ratio} "
            f"{row.target:<12} {verdict:<4} {row.note}")


def table(rows: list[Row]) -> str:
    head = (f"{'bench':<8} {'measurement':<48} {'value':>10} {'unit':<7} {'ratio':>6} "
            f"{'target':<12} {'':<4} note")
    return "\n".join([head, "-" * len(head), *(format_row(r) for r in rows)])


# --- processes ------------------------------------------------------------------------------


class Proc:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, cmd: list[str], log_dir: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     env=dict(env) if env is not None else None, cwd=ROOT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()

    def tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


class Redis:
    """A redis-server as `afterimage up` runs it: append-only, on a unix socket; with `port`
    also on TCP (a replica can follow it), with `replicaof` a replica of that port."""

    def __init__(self, data_dir: Path, fsync: str = "always", appendonly: bool = True,
                 port: int = 0, replicaof: int | None = None) -> None:
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock"
        self.fsync = fsync
        self.port = port
        follow = ["--replicaof", "127.0.0.1", str(replicaof)] if replicaof else []
        self.proc = Proc("redis", [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700", "--dir", str(self.dir),
            "--appendonly", "yes" if appendonly else "no",
            "--appendfsync", fsync, "--save", "", "--logfile", str(self.dir / "redis.log"),
            *follow,
        ], self.dir)
        self.url = f"unix://{self.socket}"
        self.client = redis.Redis(unix_socket_path=str(self.socket))
        wait_for(self._ping, 20, "redis-server to answer")

    def _ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except (redis.ConnectionError, FileNotFoundError):
            return False

    def stop(self) -> None:
        self.client.close()
        self.proc.stop()


@contextmanager
def redis_server(data_dir: Path, fsync: str = "always", appendonly: bool = True,
                 port: int = 0, replicaof: int | None = None) -> Iterator[Redis]:
    server = Redis(data_dir, fsync, appendonly, port, replicaof)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def seaweed_server(data_dir: Path) -> Iterator[SeaweedServer]:
    """SeaweedFS, a real object store (checksums verified, If-None-Match honoured)."""
    server = SeaweedServer(data_dir).start()
    try:
        yield server
    finally:
        server.stop()


def make_bucket(s3_url: str, name: str = "bench") -> str:
    boto3.client("s3", endpoint_url=s3_url, **_aws()).create_bucket(Bucket=name)
    return name


def _aws() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
            "region_name": "us-east-1"}


@contextmanager
def simulator(log_dir: Path, *args: str) -> Iterator[str]:
    """`afterimage simulate` in its own process (it does not share the driver's GIL)."""
    port = free_port()
    proc = Proc("simulator", [PY, "-m", "afterimage", "simulate", "--port", str(port),
                              "--delay", "0", *args], log_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_open(port), 20, "the simulator to listen")
        yield url
    finally:
        proc.stop()


def stack_env(redis_url: str, *, sim_url: str | None = None, s3_url: str | None = None,
              bucket: str = "bench", port: int | None = None,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of afterimage's processes in a benchmark."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERIMAGE_")}
    env.update(aws_env())
    env.update({
        "AFTERIMAGE_REDIS_URL": redis_url,
        "AFTERIMAGE_SECRET": SECRET,
        "AFTERIMAGE_API_TOKEN": API_TOKEN,
        "AFTERIMAGE_LOG_LEVEL": "INFO",
        "AFTERIMAGE_DOWNLOAD_ALLOW_CIDRS": "127.0.0.0/8",
        "AFTERIMAGE_ARCHIVE_RETRIES": "2",
        "PYTHONPATH": str(ROOT),
    })
    if port is not None:
        env["AFTERIMAGE_PORT"] = str(port)
        env["AFTERIMAGE_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    if s3_url is not None:
        env["AFTERIMAGE_STORAGE_URL"] = f"s3://{bucket}/archive"
        env["AFTERIMAGE_S3_ENDPOINT_URL"] = s3_url
    if sim_url is not None:
        env["AFTERIMAGE_EVOLINK_BASE_URL"] = f"{sim_url}/evolink"
        env["AFTERIMAGE_EVOLINK_API_KEY"] = API_KEY
    env.update(extra or {})
    return env


# --- measuring ------------------------------------------------------------------------------


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(rest.split()[0])
    return out


def reset_peak(pid: int) -> None:
    """Start VmHWM again from the current RSS (Linux: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def poll_until(check: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.02) -> float:
    """Wait for `check`; returns the time.time() at which it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.time()
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


# --- afterimage's processes ----------------------------------------------------------------

QUEUES = ("afterimage-urgent", "afterimage")


class Workers:
    """`afterimage worker` processes (or bench.jobs' launcher, to swap the worker class),
    returned once RQ lists every one of them as registered."""

    def __init__(self, count: int, env: Mapping[str, str], log_dir: Path, *,
                 forking: bool = False, tag: str = "w") -> None:
        self.client = redis.Redis.from_url(env["AFTERIMAGE_REDIS_URL"])
        self.procs: list[Proc] = []
        for i in range(count):
            name = f"{tag}{i}-{os.getpid()}"
            cmd = ([PY, "-m", "bench.jobs", "worker", "--name", name, "--forking"] if forking
                   else [PY, "-m", "afterimage", "worker", "--name", name])
            self.procs.append(Proc(f"worker-{name}", cmd, log_dir, env))
        from rq import Worker

        try:
            wait_for(lambda: len(Worker.all(connection=self.client)) >= count, 60,
                     "the workers to register")
        except AssertionError:
            self.stop()
            raise

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.alive():
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            proc.stop()
        self.client.close()


def finished_window(client: redis.Redis) -> tuple[int, int, float]:
    """(finished, failed, seconds from the first job's start to the last one's end)."""
    from rq import Queue
    from rq.job import Job

    ids: list[str] = []
    failed = 0
    for name in QUEUES:
        queue = Queue(name, connection=client)
        ids += queue.finished_job_registry.get_job_ids()
        failed += queue.failed_job_registry.count
    jobs = [j for j in Job.fetch_many(ids, connection=client) if j is not None]
    starts = [j.started_at for j in jobs if j.started_at]
    ends = [j.ended_at for j in jobs if j.ended_at]
    if not starts or not ends:
        return len(jobs), failed, 0.0
    return len(jobs), failed, (max(ends) - min(starts)).total_seconds()


def finished_count(client: redis.Redis) -> int:
    from rq import Queue

    return sum(Queue(n, connection=client).finished_job_registry.count
               + Queue(n, connection=client).failed_job_registry.count for n in QUEUES)
