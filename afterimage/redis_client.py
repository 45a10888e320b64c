"""Every Redis client afterimage makes, built here from the settings.

- `connect(settings)`: the ordinary synchronous client (workers' jobs, poller, CLI, recovery).
- `connect_blocking(settings, block_seconds)`: for a connection that blocks in Redis
  (XREADGROUP BLOCK, RQ's BLPOP/BLMOVE): its read timeout is the block time plus
  BLOCK_MARGIN, so a long block is never mistaken for a dead socket.
- `connect_async(settings)`: the receiver's asyncio client.

Each has a connect timeout, a read (socket) timeout, a health check of a connection idle for
HEALTH_CHECK_INTERVAL seconds, and tries again a command whose connection failed (a restarted
Redis, a stale pooled socket, a primary that became a replica after a failover): the
synchronous clients RETRIES times with a short backoff, the receiver's once and at once (it
answers 503 rather than keep a provider waiting). A timeout is never retried: the command may
have run.

`AFTERIMAGE_REDIS_URL` is `redis://`, `rediss://`, `unix://` or a Sentinel URL,
`redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]`: then the client
talks to the service's current primary, asking the sentinels again after any connection
error, so it follows a failover without a restart. The password is the primary's (the
sentinels are asked without one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from afterimage.errors import ConfigError

if TYPE_CHECKING:
    from afterimage.settings import Settings

CONNECT_TIMEOUT = 2.0  # seconds to open a connection (and to ask a sentinel)
READ_TIMEOUT = 5.0  # seconds to wait for a reply to a command that does not block
BLOCK_MARGIN = 10.0  # added to a blocking command's own time (RQ asks for 10 s more)
HEALTH_CHECK_INTERVAL = 15  # a connection idle this long is PINGed before use
RETRIES = 3  # tries again after a connection error, 0.05 s, 0.1 s, 0.2 s apart
ASYNC_RETRIES = 1  # the receiver's, at once
SENTINEL_SCHEMES = ("redis+sentinel",)
PLAIN_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed `redis+sentinel://` URL."""

    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def check_url(url: str) -> None:
    """Raise ConfigError if `url` is not one afterimage can connect to (no secret in it)."""
    scheme = url.partition("://")[0].lower()
    if scheme in SENTINEL_SCHEMES:
        parse_sentinel(url)
    elif scheme not in PLAIN_SCHEMES or "://" not in url:
        raise ConfigError("AFTERIMAGE_REDIS_URL must start with redis://, rediss://, unix:// "
                          "or redis+sentinel://")


def parse_sentinel(url: str) -> SentinelUrl:
    """`redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]`."""
    rest = url.partition("://")[2]
    netloc, _, path = rest.partition("/")
    path = path.partition("?")[0]
    auth, _, hostlist = netloc.rpartition("@")
    username = password = None
    if auth:
        user, _, pw = auth.partition(":")
        username, password = unquote(user) or None, unquote(pw) or None
    hosts = tuple(_host_port(h) for h in hostlist.split(",") if h)
    parts = [p for p in path.split("/") if p]
    if not hosts or not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ConfigError("AFTERIMAGE_REDIS_URL: a Sentinel URL is "
                          "redis+sentinel://[:password@]host:port[,host:port...]/service[/db]")
    return SentinelUrl(hosts, unquote(parts[0]), int(parts[1]) if len(parts) == 2 else 0,
                       username, password)


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host or (port and not port.isdigit()):
        raise ConfigError(f"AFTERIMAGE_REDIS_URL: bad sentinel address {text!r}")
    return host, int(port) if port else DEFAULT_SENTINEL_PORT


def connect(settings: Settings, *, read_timeout: float = READ_TIMEOUT) -> redis.Redis:
    """A synchronous client for commands that do not block."""
    return _sync(_url(settings), read_timeout)


def connect_blocking(settings: Settings, block_seconds: float) -> redis.Redis:
    """A synchronous client whose commands may block in Redis up to `block_seconds`."""
    return _sync(_url(settings), block_seconds + BLOCK_MARGIN)


def connect_async(settings: Settings, *, max_connections: int | None = None) -> aredis.Redis:
    """The asyncio client (at most `max_connections` open at once, if given)."""
    url = _url(settings)
    options: dict[str, Any] = {
        "socket_timeout": READ_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": AsyncRetry(NoBackoff(), ASYNC_RETRIES,
                            supported_errors=(redis.ConnectionError,)),
    }
    if max_connections is not None:
        options["max_connections"] = max_connections
    if _is_sentinel(url):
        s = parse_sentinel(url)
        sentinel = AsyncSentinel(list(s.hosts), sentinel_kwargs=_sentinel_kwargs())
        client: aredis.Redis = sentinel.master_for(
            s.service, redis_class=aredis.Redis, db=s.db, username=s.username,
            password=s.password, **options)
        return client
    return aredis.Redis.from_url(url, **options)


def _sync(url: str, read_timeout: float) -> redis.Redis:
    options: dict[str, Any] = {
        "socket_timeout": read_timeout, "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": Retry(_backoff(), RETRIES, supported_errors=(redis.ConnectionError,)),
    }
    if _is_sentinel(url):
        s = parse_sentinel(url)
        sentinel = Sentinel(list(s.hosts), sentinel_kwargs=_sentinel_kwargs())
        client: redis.Redis = sentinel.master_for(
            s.service, redis_class=redis.Redis, db=s.db, username=s.username,
            password=s.password, **options)
        return client
    return redis.Redis.from_url(url, **options)


def _url(settings: Settings) -> str:
    if not settings.redis_url:
        raise ConfigError("AFTERIMAGE_REDIS_URL is not set")
    return settings.redis_url


def _is_sentinel(url: str) -> bool:
    return url.partition("://")[0].lower() in SENTINEL_SCHEMES


def _sentinel_kwargs() -> dict[str, Any]:
    return {"socket_timeout": READ_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=0.5, base=0.05)
