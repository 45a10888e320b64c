"""The one Redis client factory: URLs it accepts, timeouts that hold against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis

from afterimage import redis_client
from afterimage.errors import ConfigError
from afterimage.settings import Settings


def test_a_sentinel_url_names_its_sentinels_service_db_and_password() -> None:
    s = redis_client.parse_sentinel("redis+sentinel://:p%40ss@h1:26380,[::1]:5,h3/mymaster/2")
    assert s.hosts == (("h1", 26380), ("::1", 5), ("h3", 26379))
    assert (s.service, s.db, s.username, s.password) == ("mymaster", 2, None, "p@ss")
    assert "p@ss" not in repr(s)


@pytest.mark.parametrize("url", [
    "redis+sentinel://h1:26379", "redis+sentinel://h1:26379/", "redis+sentinel:///svc",
    "redis+sentinel://h1:port/svc", "redis+sentinel://h1/svc/zero", "http://h1/0", "h1:6379",
])
def test_a_url_afterimage_cannot_use_is_refused_at_start(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AFTERIMAGE_REDIS_URL": url})
    assert "AFTERIMAGE_REDIS_URL" in str(caught.value)


def test_a_password_in_a_refused_url_is_not_repeated() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AFTERIMAGE_REDIS_URL": "redis+sentinel://:hunter2@h1:x/svc"})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("value", ["-1", "1.5", "two"])
def test_min_replicas_must_be_a_whole_number(value: str) -> None:
    with pytest.raises(ConfigError, match="AFTERIMAGE_REDIS_MIN_REPLICAS"):
        Settings.from_env({"AFTERIMAGE_REDIS_MIN_REPLICAS": value})


def test_min_replicas_defaults_to_none() -> None:
    assert Settings.from_env({}).redis_min_replicas == 0
    assert Settings.from_env({"AFTERIMAGE_REDIS_MIN_REPLICAS": "2"}).redis_min_replicas == 2


def test_a_reply_that_does_not_come_ends_in_a_timeout(redis_url: str) -> None:
    """A read never waits for ever (a half-open connection would hang a loop)."""
    client = redis_client.connect(Settings(redis_url=redis_url), read_timeout=0.3)
    with pytest.raises(redis.TimeoutError):
        client.blpop(["never-filled"], timeout=2)
    assert client.ping()  # and the client goes on working


def test_a_blocking_client_waits_out_its_block(redis_url: str) -> None:
    client = redis_client.connect_blocking(Settings(redis_url=redis_url), block_seconds=1)
    assert client.blpop(["never-filled"], timeout=1) is None
    client.rpush("filled", "x")
    assert client.blpop(["filled"], timeout=1) == (b"filled", b"x")


def test_every_client_has_timeouts_and_health_checks(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url)
    for client in (redis_client.connect(settings), redis_client.connect_async(settings)):
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == redis_client.READ_TIMEOUT
        assert kwargs["socket_connect_timeout"] == redis_client.CONNECT_TIMEOUT
        assert kwargs["health_check_interval"] == redis_client.HEALTH_CHECK_INTERVAL
    blocking = redis_client.connect_blocking(settings, 10)
    assert blocking.connection_pool.connection_kwargs["socket_timeout"] == (
        10 + redis_client.BLOCK_MARGIN)


def test_a_command_after_a_restart_of_redis_goes_through(redis_url: str) -> None:
    """A pooled connection that Redis closed is retried on a fresh one."""
    client = redis_client.connect(Settings(redis_url=redis_url))
    client.set("k", "v")
    client.client_kill_filter(_type="normal", skipme=False)
    assert client.get("k") == b"v"


def test_the_async_client_reaches_redis(redis_url: str) -> None:
    async def roundtrip() -> bytes | None:
        client = redis_client.connect_async(Settings(redis_url=redis_url), max_connections=2)
        try:
            await client.set("a", "1")
            value: bytes | None = await client.get("a")
            return value
        finally:
            await client.aclose()

    assert asyncio.run(roundtrip()) == b"1"
