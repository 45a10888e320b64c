"""GET /ops/objects/{key} streams an archived object from the store, never holding it whole."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from afterimage.storage.file import FileStore
from receiver import create_app
from tests.receiver.test_callbacks import settings_for
from tests.support import ServerThread

TOKEN = "api-token"
MiB = 1024 * 1024


@pytest.fixture()
def archive(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "archive")


@pytest.fixture()
def base(redis_url: str, archive: FileStore) -> Iterator[str]:
    settings = settings_for(redis_url, storage_url=f"file://{archive.root}")
    with ServerThread(create_app(settings)) as server:
        yield server.url


@pytest.fixture()
def client(base: str) -> Iterator[httpx.Client]:
    """Signed in to /ops."""
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.post("/ops/login", data={"token": TOKEN}).status_code == 303
        yield client


def test_a_large_object_is_streamed_without_being_held_in_memory(
    client: httpx.Client, archive: FileStore
) -> None:
    data = os.urandom(48 * MiB)
    meta = {"afterimage-sha256": hashlib.sha256(data).hexdigest()}
    assert archive.put_once("kie/t-1/0.png", io.BytesIO(data), len(data), "image/png", meta)
    digest, size = hashlib.sha256(), 0
    tracemalloc.start()
    try:
        with client.stream("GET", "/ops/objects/kie/t-1/0.png") as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "image/png"
            assert r.headers["content-length"] == str(len(data))
            assert "sandbox" in r.headers["content-security-policy"]
            for chunk in r.iter_raw():
                digest.update(chunk)
                size += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (size, digest.hexdigest()) == (len(data), meta["afterimage-sha256"])
    assert peak < 8 * MiB, f"serving 48 MiB took {peak / MiB:.1f} MiB at its peak"


def test_missing_and_impossible_keys_are_404(client: httpx.Client, archive: FileStore) -> None:
    assert archive.put_once("kie/t-1/x.bin", io.BytesIO(b"\0"), 1, "application/x-thing", {})
    for key in ("kie/t-1/nope.png", "kie/%2E%2E/%2E%2E/etc/passwd", "kie/.afterimage-meta/x"):
        r = client.get(f"/ops/objects/{key}")
        assert r.status_code == 404, key
        assert r.json()["error"]["code"] == "not_found"
    other = client.get("/ops/objects/kie/t-1/x.bin")
    assert other.content == b"\0"
    assert other.headers["content-type"] == "application/octet-stream"
    assert other.headers["content-disposition"] == "attachment"
