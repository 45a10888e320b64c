"""Storage integrity against a real object store (SeaweedFS): every object carries its SHA-256,
a body damaged on the way is refused by the store and sent again, never stored; racing writers
of one key leave one version; the start-up check refuses a store that overwrites."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from afterimage.errors import ConfigError, StorageError
from afterimage.storage.base import ObjectStore
from afterimage.storage.file import FileStore
from afterimage.storage.probe import PROBE, CheckedStore, check_put_once
from afterimage.storage.s3 import S3Store
from tests.seaweed import SeaweedServer, versions
from tests.storage.careless_store import CarelessStore
from tests.storage.flip_proxy import FlipProxy
from tests.support import clean_env

MiB = 1024 * 1024
META = {"afterimage-provider": "kie", "afterimage-task-id": "t-1"}


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def composite(data: bytes, part_size: int) -> str:
    """S3's composite checksum of a multipart upload: SHA-256 of the parts' digests, -count."""
    parts = [data[i:i + part_size] for i in range(0, len(data), part_size)]
    joined = b"".join(hashlib.sha256(p).digest() for p in parts)
    return f"{b64_sha256(joined)}-{len(parts)}"


def small_parts(bucket: str, endpoint: str, **options: int) -> S3Store:
    """A store that goes multipart above 5 MiB, in 5 MiB parts."""
    return S3Store(bucket, "archive", endpoint_url=endpoint, multipart_threshold=5 * MiB,
                   part_size=5 * MiB, **options)


def test_every_object_carries_its_sha256(s3_server: SeaweedServer, s3_bucket: str) -> None:
    store, client = small_parts(s3_bucket, s3_server.url), s3_server.client()
    image, manifest, large = os.urandom(300_000), b'{"images": []}', os.urandom(12 * MiB + 5)
    given = hashlib.sha256(image).hexdigest()
    assert store.put_once("archive/kie/t-1/0.png", io.BytesIO(image), len(image), "image/png",
                          META, sha256=given)
    assert store.put_once("archive/kie/t-1/manifest.json", io.BytesIO(manifest), len(manifest),
                          "application/json", META)  # no digest given: the store takes it
    assert store.put_once("archive/kie/t-1/1.png", io.BytesIO(large), len(large), "image/png",
                          META, sha256=hashlib.sha256(large).hexdigest())

    def checksum(key: str) -> tuple[str, str | None]:
        head = client.head_object(Bucket=s3_bucket, Key=key, ChecksumMode="ENABLED")
        return head["ChecksumSHA256"], head.get("ChecksumType")

    assert checksum("archive/kie/t-1/0.png")[0] == base64.b64encode(bytes.fromhex(given)).decode()
    assert checksum("archive/kie/t-1/manifest.json")[0] == b64_sha256(manifest)
    assert checksum("archive/kie/t-1/1.png") == (composite(large, 5 * MiB), "COMPOSITE")


@pytest.mark.parametrize("size", [300_000, 12 * MiB], ids=["single", "multipart"])
def test_a_body_unlike_its_download_digest_is_refused(
    s3_server: SeaweedServer, s3_bucket: str, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    wrong = hashlib.sha256(data + b"x").hexdigest()
    for store in (small_parts(s3_bucket, s3_server.url), FileStore(tmp_path / "archive")):
        key = store.key("kie", "t-1", "0.png")
        with pytest.raises(StorageError, match=r"SHA-256|BadDigest"):
            store.put_once(key, io.BytesIO(data), size, "image/png", META, sha256=wrong)
        assert store.head(key) is None
    client = s3_server.client()
    assert versions(client, s3_bucket) == {}
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert [p for p in (tmp_path / "archive").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("size", [300_000, 12 * MiB], ids=["single", "multipart"])
def test_a_body_damaged_on_the_way_is_refused_sent_again_and_stored_whole(
    s3_server: SeaweedServer, s3_bucket: str, size: int
) -> None:
    data = os.urandom(size)
    with FlipProxy(int(s3_server.url.rsplit(":", 1)[1]), damage=1) as proxy:
        store = small_parts(s3_bucket, proxy.url)
        key = store.key("kie", "t-1", "0.png")
        assert store.put_once(key, io.BytesIO(data), size, "image/png", META,
                              sha256=hashlib.sha256(data).hexdigest()) is True
    assert len(proxy.damaged) == 1
    assert b"BadDigest" in proxy.responses  # the store itself refused the damaged body
    client = s3_server.client()
    assert versions(client, s3_bucket) == {key: 1}
    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == data


def test_a_body_damaged_every_time_is_never_stored(
    s3_server: SeaweedServer, s3_bucket: str
) -> None:
    data = os.urandom(100_000)
    with FlipProxy(int(s3_server.url.rsplit(":", 1)[1]), damage=100) as proxy:
        store = S3Store(s3_bucket, "archive", endpoint_url=proxy.url, max_attempts=3)
        key = store.key("kie", "t-1", "0.png")
        with pytest.raises(StorageError, match="BadDigest"):
            store.put_once(key, io.BytesIO(data), len(data), "image/png", META,
                           sha256=hashlib.sha256(data).hexdigest())
    assert len(proxy.damaged) == 3
    assert versions(s3_server.client(), s3_bucket) == {}


def test_racing_writers_of_one_key_leave_one_version(
    s3_server: SeaweedServer, s3_bucket: str
) -> None:
    """Single PUTs (every image up to the 16 MiB multipart threshold, every manifest). Racing
    multipart completes are not atomic in SeaweedFS 4.48 (several may succeed, leaving several
    versions), so there it rests on the ledger: one archive job per task and generation."""
    writers, size = 8, 64 * 1024
    bodies = [bytes([i]) * size for i in range(writers)]
    results: dict[int, bool] = {}
    start = threading.Barrier(writers)

    def write(i: int) -> None:
        store = small_parts(s3_bucket, s3_server.url)  # each its own client, as workers are
        store.ping()
        start.wait()
        results[i] = store.put_once("archive/kie/t-1/0.png", io.BytesIO(bodies[i]), size,
                                    "image/png", META,
                                    sha256=hashlib.sha256(bodies[i]).hexdigest())

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (winner,) = [i for i, won in results.items() if won]
    assert len(results) == writers
    client = s3_server.client()
    assert versions(client, s3_bucket) == {"archive/kie/t-1/0.png": 1}
    stored = client.get_object(Bucket=s3_bucket, Key="archive/kie/t-1/0.png")["Body"].read()
    assert stored == bodies[winner]
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_the_start_up_check_passes_on_a_store_that_refuses_a_second_write(
    s3_server: SeaweedServer, s3_bucket: str, tmp_path: Path
) -> None:
    stores: list[ObjectStore] = [S3Store(s3_bucket, "archive", endpoint_url=s3_server.url),
                                 FileStore(tmp_path / "archive")]
    for store in stores:
        check_put_once(store)
        check_put_once(store)  # a later start finds the probe and is refused twice
    assert versions(s3_server.client(), s3_bucket) == {f"archive/{PROBE}": 1}
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == [".afterimage-meta", PROBE]


def test_the_start_up_check_refuses_a_store_that_overwrites() -> None:
    with CarelessStore() as careless:
        store = S3Store("bucket", "archive", endpoint_url=careless.url)
        with pytest.raises(ConfigError) as refused:
            check_put_once(store)
    message = str(refused.value)
    assert f"bucket 'bucket' at {careless.url}" in message
    assert "If-None-Match" in message and "\n" not in message
    assert [path for path, _ in careless.puts] == [f"/bucket/archive/{PROBE}"] * 2


def test_worker_and_up_refuse_to_start_on_a_store_that_overwrites(tmp_path: Path) -> None:
    env = clean_env()
    with CarelessStore() as careless:
        env.update(AFTERIMAGE_STORAGE_URL="s3://bucket/archive",
                   AFTERIMAGE_S3_ENDPOINT_URL=careless.url,
                   AFTERIMAGE_DATA_DIR=str(tmp_path / "data"))
        for args in (["worker"], ["up"]):
            run_env = {**env, "AFTERIMAGE_REDIS_URL": "redis://127.0.0.1:1/0"} \
                if args == ["worker"] else env
            done = subprocess.run([sys.executable, "-m", "afterimage", *args], env=run_env,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 1, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1, done.stderr
            assert lines[0].startswith("afterimage: error: the store (bucket 'bucket' at ")
            assert "accepted a second write" in lines[0]
    assert not (tmp_path / "data").exists()  # `up` refused before making anything


def test_a_store_unchecked_at_start_is_checked_before_its_first_write(
    s3_server: SeaweedServer, s3_bucket: str
) -> None:
    with CarelessStore() as careless:
        store = CheckedStore(S3Store("bucket", "archive", endpoint_url=careless.url))
        with pytest.raises(ConfigError, match="accepted a second write"):
            store.put_once("archive/kie/t-1/0.png", io.BytesIO(b"png"), 3, "image/png", META)
    assert [path for path, _ in careless.puts] == [f"/bucket/archive/{PROBE}"] * 2
    checked = CheckedStore(S3Store(s3_bucket, "archive", endpoint_url=s3_server.url))
    for n in range(3):
        assert checked.put_once(f"archive/kie/t-1/{n}.png", io.BytesIO(b"png"), 3, "image/png",
                                META) is True
    assert versions(s3_server.client(), s3_bucket) == {
        f"archive/{PROBE}": 1, **{f"archive/kie/t-1/{n}.png": 1 for n in range(3)}}
