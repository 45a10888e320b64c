"""Shared fixtures: a real Redis and a real S3-protocol server, started once per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import redis

from tests.support import MotoServer, RedisServer, clean_env

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
def s3_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture()
def s3_bucket(s3_server: MotoServer) -> str:
    """A fresh, empty bucket on the S3-protocol server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server.url).create_bucket(Bucket=name)
    return name


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
