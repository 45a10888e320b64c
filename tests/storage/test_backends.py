"""The storage backends, S3 (SeaweedFS, a real object store keeping versions) and a local
directory, held to one contract."""

from __future__ import annotations

import io
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from afterimage.errors import ConfigError, StorageError
from afterimage.storage import ObjectInfo, ObjectStore, open_store
from afterimage.storage.base import CHUNK
from afterimage.storage.file import META_DIR, FileStore
from afterimage.storage.probe import PROBE
from afterimage.storage.s3 import S3Store
from afterimage.storage.s3_parts import put_in_parts
from tests.seaweed import SeaweedServer, versions
from tests.support import free_port

MiB = 1024 * 1024
META = {"afterimage-provider": "kie", "afterimage-task-id": "t-1", "afterimage-sha256": "ab" * 32}


@dataclass
class Backend:
    store: ObjectStore
    objects: Callable[[], dict[str, list[bytes]]]  # every stored version of every key
    leftovers: Callable[[], list[str]]  # unfinished uploads, temp files
    dead: Callable[[], ObjectStore]  # the same kind of store, unreachable


def s3_backend(server: SeaweedServer, bucket: str) -> Backend:
    client = server.client()

    def objects() -> dict[str, list[bytes]]:
        found: dict[str, list[bytes]] = {}
        for version in client.list_object_versions(Bucket=bucket).get("Versions", []):
            if version["Key"] == store.key(PROBE):
                continue
            got = client.get_object(Bucket=bucket, Key=version["Key"],
                                    VersionId=version["VersionId"])
            found.setdefault(version["Key"], []).append(got["Body"].read())
        return found

    def leftovers() -> list[str]:
        return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    def dead() -> ObjectStore:
        return S3Store(bucket, endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)

    store = S3Store(bucket, "archive", endpoint_url=server.url)
    return Backend(store, objects, leftovers, dead)


def file_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "archive"

    def objects() -> dict[str, list[bytes]]:
        files = [p for p in root.rglob("*") if p.is_file() and META_DIR not in p.parts]
        return {str(p.relative_to(root)): [p.read_bytes()] for p in files if p.name[0] != "."}

    def leftovers() -> list[str]:
        return [str(p) for p in root.rglob(".tmp-*")]

    def dead() -> ObjectStore:
        (tmp_path / "not-a-dir").write_bytes(b"")
        return FileStore(tmp_path / "not-a-dir" / "archive")

    return Backend(FileStore(root), objects, leftovers, dead)


@pytest.fixture(params=["s3", "file"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "s3":
        return s3_backend(
            request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket")
        )
    return file_backend(tmp_path)


class BodyBroke(Exception):
    pass


class BreakingBody(io.BytesIO):
    """A body whose reads fail once they reach byte `fail_at`."""

    def __init__(self, data: bytes, fail_at: int) -> None:
        super().__init__(data)
        self.fail_at = fail_at

    def read(self, size: int | None = -1) -> bytes:
        room = self.fail_at - self.tell()
        if room <= 0:
            raise BodyBroke("the source went away")
        return super().read(room if size is None or size < 0 else min(size, room))


def put(store: ObjectStore, key: str, data: bytes, content_type: str = "image/png") -> bool:
    return store.put_once(key, io.BytesIO(data), len(data), content_type, META)


def test_put_then_head_and_get_round_trip(backend: Backend) -> None:
    store, data = backend.store, os.urandom(256 * 1024)
    key = store.key("kie", "t-1", "0.png")
    assert store.head(key) is None
    assert put(store, key, data) is True
    assert store.head(key) == ObjectInfo(len(data), "image/png", META)
    assert store.get(key) == data
    assert backend.objects() == {key: [data]}


def test_second_put_once_keeps_the_first_object(backend: Backend) -> None:
    store = backend.store
    key = store.key("kie", "t-1", "manifest.json")
    assert put(store, key, b'{"first": true}', "application/json") is True
    assert put(store, key, b'{"second": true}', "text/plain") is False
    assert store.get(key) == b'{"first": true}'
    assert store.head(key) == ObjectInfo(15, "application/json", META)
    assert backend.objects() == {key: [b'{"first": true}']}


def test_missing_objects(backend: Backend) -> None:
    key = backend.store.key("kie", "nope", "0.png")
    assert backend.store.head(key) is None
    with pytest.raises(KeyError):
        backend.store.get(key)


def test_large_body_round_trips_in_parts(backend: Backend, tmp_path: Path) -> None:
    data = os.urandom(40 * MiB + 12345)
    (tmp_path / "image.png").write_bytes(data)
    key = backend.store.key("kie", "t-1", "0.png")
    with open(tmp_path / "image.png", "rb") as body:
        assert backend.store.put_once(key, body, len(data), "image/png", META) is True
    with open(tmp_path / "image.png", "rb") as body:
        assert backend.store.put_once(key, body, len(data), "image/png", META) is False
    assert backend.store.head(key) == ObjectInfo(len(data), "image/png", META)
    assert backend.objects() == {key: [data]}
    assert backend.leftovers() == []


@pytest.mark.parametrize("size", [256 * 1024, 40 * MiB], ids=["small", "multipart"])
def test_failed_upload_leaves_nothing(backend: Backend, size: int) -> None:
    key = backend.store.key("kie", "t-1", "0.png")
    body = BreakingBody(os.urandom(size), fail_at=size // 2)
    with pytest.raises(BodyBroke):
        backend.store.put_once(key, body, size, "image/png", META)
    assert backend.store.head(key) is None
    assert backend.objects() == {}
    assert backend.leftovers() == []
    assert put(backend.store, key, b"later") is True


def test_short_body_is_refused(backend: Backend) -> None:
    key = backend.store.key("kie", "t-1", "0.png")
    with pytest.raises(StorageError, match="body"):
        backend.store.put_once(key, io.BytesIO(b"12345"), 17 * MiB, "image/png", META)
    assert backend.store.head(key) is None
    assert backend.leftovers() == []


def test_ping(backend: Backend) -> None:
    backend.store.ping()
    dead = backend.dead()
    with pytest.raises(StorageError, match="failed"):
        dead.ping()
    with pytest.raises(StorageError):
        put(dead, dead.key("kie", "t-1", "0.png"), b"x")


def test_dead_s3_endpoint_is_named(s3_bucket: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = open_store(f"s3://{s3_bucket}", url)
    with pytest.raises(StorageError, match=f"Could not connect to the endpoint URL.*{url}"):
        store.ping()


def test_s3_client_is_made_lazily_and_reused(s3_server: SeaweedServer, s3_bucket: str) -> None:
    store = S3Store(s3_bucket, endpoint_url=s3_server.url)
    assert store._client is None
    store.ping()
    first = store._client
    assert put(store, "a.png", b"a") is True
    assert store._client is first


def test_s3_client_is_made_again_after_fork(s3_server: SeaweedServer, s3_bucket: str) -> None:
    store = S3Store(s3_bucket, endpoint_url=s3_server.url)
    store.ping()
    parent = store._client
    pid = os.fork()
    if pid == 0:  # the child: must not reuse the parent's client
        ok = put(store, "child.png", b"c") and store._client is not parent
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get("child.png") == b"c"
    assert store._client is parent


def test_s3_conditional_complete_keeps_the_first_object(
    s3_server: SeaweedServer, s3_bucket: str
) -> None:
    """Past the HEAD check, a key that appears meanwhile still wins: the upload is aborted."""
    store = S3Store(s3_bucket, endpoint_url=s3_server.url)
    assert put(store, "k.png", b"first") is True
    data = os.urandom(6 * MiB)
    won = put_in_parts(
        store._s3(), s3_bucket, "k.png", io.BytesIO(data), len(data), "image/png", META,
        sha256=None, part_size=5 * MiB, concurrency=2, attempts=1,
    )  # fmt: skip
    assert won is False
    assert store.get("k.png") == b"first"
    client = s3_server.client()
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert versions(client, s3_bucket) == {"k.png": 1}


def test_open_store_parses_urls(tmp_path: Path) -> None:
    s3 = open_store("s3://my-bucket/some/prefix/", "http://127.0.0.1:9000")
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == (
        "my-bucket",
        "some/prefix",
        "http://127.0.0.1:9000",
    )
    assert s3.key("kie", "t-1", "0.png") == "some/prefix/kie/t-1/0.png"
    bare = open_store("s3://my-bucket", None)
    assert bare.key("kie", "t-1", "0.png") == "kie/t-1/0.png"
    local = open_store(f"file://{tmp_path}/archive", None)
    assert isinstance(local, FileStore) and local.root == tmp_path / "archive"
    assert local.key("kie", "t-1", "0.png") == "kie/t-1/0.png"


@pytest.mark.parametrize(
    "url",
    ["", "/abs/dir", "http://example.com/x", "s3://", "s3:///prefix", "s3://user@bucket",
     "s3://bucket/../x", "s3://bucket?region=x", "file://host/dir", "file:relative", "file:///",
     "gs://bucket"],
)  # fmt: skip
def test_open_store_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(url, None)


@pytest.mark.parametrize("part", ["", ".", "..", "a/b"])
def test_key_parts_are_checked(backend: Backend, part: str) -> None:
    with pytest.raises(ValueError, match="key part"):
        backend.store.key("kie", part, "0.png")


@pytest.mark.parametrize(
    "key", ["../x.png", "/etc/x.png", "a/../../x.png", "a//b.png", f"{META_DIR}/x.png", "a/.b", ""]
)
def test_file_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    store = FileStore(tmp_path / "root" / "archive")
    with pytest.raises(ValueError, match="not allowed"):
        store.put_once(key, io.BytesIO(b"x"), 1, "image/png", META)
    with pytest.raises(ValueError):
        store.head(key)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_file_store_concurrent_writers_leave_one_object(tmp_path: Path) -> None:
    store, results = FileStore(tmp_path), dict[int, bool]()
    start = threading.Barrier(8)

    def write(i: int) -> None:
        body: BinaryIO = io.BytesIO(bytes([i]) * 4096)
        start.wait()
        results[i] = store.put_once("k/0.png", body, 4096, f"image/x-{i}", {"n": str(i)})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (winner,) = [i for i, ok in results.items() if ok]
    assert store.get("k/0.png") == bytes([winner]) * 4096
    assert store.head("k/0.png") == ObjectInfo(4096, f"image/x-{winner}", {"n": str(winner)})
    assert list(tmp_path.rglob(".tmp-*")) == []


def test_stream_gives_the_object_in_bounded_chunks(backend: Backend) -> None:
    store, data = backend.store, os.urandom(CHUNK * 3 + 17)
    key = store.key("kie", "t-1", "0.png")
    assert store.stream(key) is None
    assert put(store, key, data) is True
    found = store.stream(key)
    assert found is not None
    info, chunks = found
    assert info == ObjectInfo(len(data), "image/png", META)
    got = list(chunks)
    assert b"".join(got) == data
    assert max(len(c) for c in got) <= CHUNK


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"),
                         [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o644, 0o755)])
def test_file_store_modes_let_other_users_read_within_the_umask(
    tmp_path: Path, umask: int, file_mode: int, dir_mode: int
) -> None:
    old = os.umask(umask)
    try:
        store = FileStore(tmp_path / "archive")
        assert put(store, "kie/t-1/0.png", b"png") is True
        assert put(store, "kie/t-1/manifest.json", b"{}", "application/json") is True
    finally:
        os.umask(old)
    root = tmp_path / "archive"
    made = [p for p in root.rglob("*")]
    assert {stat.S_IMODE(p.stat().st_mode) for p in made if p.is_file()} == {file_mode}
    assert {stat.S_IMODE(p.stat().st_mode) for p in made if p.is_dir()} == {dir_mode}
    assert stat.S_IMODE(root.stat().st_mode) == dir_mode
    assert len([p for p in made if p.is_file()]) == 4  # two objects and their sidecars
