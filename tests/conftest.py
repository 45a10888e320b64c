"""Shared fixtures: a real Redis and a real S3 object store (SeaweedFS), started once per
session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.seaweed import SeaweedServer
from tests.support import RedisServer, clean_env

# The suite is immune to the caller's shell: no AFTERIMAGE_* setting exported there reaches
# this process (Settings.from_env(), in-process CLI runs) or any child it starts.
_CLEAN = clean_env()
os.environ.clear()
os.environ.update(_CLEAN)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A flushed database on the session's Redis."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """SeaweedFS: verifies checksums, honours If-None-Match, keeps versions."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()


@pytest.fixture()
def s3_bucket(s3_server: SeaweedServer) -> str:
    """A fresh, empty bucket on the object store, keeping every version of every key."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
