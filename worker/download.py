"""Fetch one image from an untrusted URL into a file: SSRF-safe, bounded, streamed.

Built on httpcore with a network backend of our own, not on drawbridge or httpx:

* drawbridge 0.1.2 (alpha) pins the address by rewriting the request URL to the IP, and so
  has to switch keep-alive off (otherwise a pool keyed by IP would let a connection made for one
  host name serve another); it also judges addresses by a fixed deny-list of ranges.
* httpcore, the maintained engine under httpx, accepts a NetworkBackend: ours resolves the host
  once, checks every address (worker.addresses), and connects to the checked address. The URL
  keeps its host name, so the pool is keyed by host name (connections are reused safely), TLS
  verifies the certificate against the host name, and SNI is the host name.
* httpx.HTTPTransport takes no network backend, so wrapping for httpx would mean reaching into
  its private pool; httpx would add only redirects (which must be checked per hop here anyway)
  and content decoding (not wanted: the stored bytes are the bytes served).

Limits: at most MAX_REDIRECTS redirects, each hop checked the same way. A download is bounded
by its progress, not by a fixed total: every socket operation (connect, TLS, each read) must
finish within `stall_timeout`, so a host that stops sending is given up on quickly, while one
that keeps sending may take up to `time_limit` for the whole fetch (the settings scale it to
the size limit: `Settings.download_time_limit`); name resolution is excepted (the system
resolver's own timeouts apply). `max_bytes` is enforced from Content-Length and while
streaming; response headers are capped at 100 KiB by httpcore.
"""

from __future__ import annotations

import hashlib
import math
import os
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import certifi
import httpcore
import httpx

from afterimage.errors import (
    DownloadError,
    ImageRejectedError,
    LinkExpiredError,
    TransientDownloadError,
    UnsafeUrlError,
)
from afterimage.images import TAIL_SIZE, ImageInfo, looks_complete, sniff
from worker.addresses import Network, resolve_allowed

MAX_REDIRECTS = 3
# Bytes asked of the socket per read: fewer, larger chunks, yet under the worker's mmap
# threshold (worker.memory.bound_malloc), so the buffer is reused rather than mapped anew.
READ_SIZE = 256 * 1024
_HEADERS = [
    (b"User-Agent", b"afterimage"),
    (b"Accept", b"image/png, image/jpeg, image/webp, */*;q=0.5"),
    (b"Accept-Encoding", b"identity"),
]
_deadline: ContextVar[float] = ContextVar("afterimage_download_deadline", default=math.inf)


@dataclass(frozen=True)
class FetchedImage:
    bytes: int
    sha256: str
    content_type: str
    ext: str
    width: int
    height: int
    source_url: str  # the URL asked for, without its query string


class DownloadClient:
    """Keep-alive connection pools for fetch_image: one per allow-list, so a connection checked
    under one allow-list is never reused under another. At most `per_host` downloads from one
    host (name and port) run at once; the others wait their turn (`host_slot`)."""

    def __init__(
        self, ssl_context: ssl.SSLContext | None = None, max_connections: int = 8,
        per_host: int = 8,
    ) -> None:  # fmt: skip
        self._ssl = ssl_context or ssl.create_default_context(cafile=certifi.where())
        self._max_connections = max_connections
        self._pools: dict[tuple[Network, ...], httpcore.ConnectionPool] = {}
        self._lock = threading.Lock()
        self.per_host = per_host
        self._hosts: dict[tuple[str, int | None], tuple[threading.Semaphore, int]] = {}

    def pool(self, allow_cidrs: Sequence[Network]) -> httpcore.ConnectionPool:
        """The pool whose connections were all checked against `allow_cidrs`."""
        key = tuple(allow_cidrs)
        with self._lock:
            if key not in self._pools:
                self._pools[key] = httpcore.ConnectionPool(
                    ssl_context=self._ssl,
                    max_connections=self._max_connections,
                    keepalive_expiry=30.0,
                    network_backend=_PinnedBackend(key),
                )
            return self._pools[key]

    @contextmanager
    def host_slot(self, host: str, port: int | None) -> Iterator[None]:
        """Hold one of `host`'s `per_host` places while the block runs (waits for one)."""
        key = (host.lower(), port)
        with self._lock:
            gate, users = self._hosts.get(key) or (threading.Semaphore(self.per_host), 0)
            self._hosts[key] = (gate, users + 1)
        try:
            with gate:
                yield
        finally:
            with self._lock:  # forget a host no one is using: the map stays small
                gate, users = self._hosts[key]
                if users == 1:
                    del self._hosts[key]
                else:
                    self._hosts[key] = (gate, users - 1)

    def users(self, host: str, port: int | None) -> int:
        """Downloads from `host` running or waiting for their place."""
        with self._lock:
            return self._hosts.get((host.lower(), port), (None, 0))[1]

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


_default: tuple[int, DownloadClient] | None = None
_default_lock = threading.Lock()


def default_client() -> DownloadClient:
    """This process's shared client (made again after a fork)."""
    global _default
    with _default_lock:
        if _default is None or _default[0] != os.getpid():
            _default = (os.getpid(), DownloadClient())
        return _default[1]


def fetch_image(
    url: str,
    sink: BinaryIO,
    *,
    max_bytes: int,
    max_pixels: int,
    allow_cidrs: Sequence[Network],
    stall_timeout: float = 30.0,
    time_limit: float = 120.0,
    client: DownloadClient | None = None,
) -> FetchedImage:
    """Stream the image at `url` into `sink`; on error, `sink` holds a partial body to discard.
    No socket operation may take over `stall_timeout`, nor the whole fetch over `time_limit`."""
    shown = redact(url)
    client = client or default_client()
    pool = client.pool(allow_cidrs)
    target = _parse(url, shown)
    with client.host_slot(target.host, target.port):  # the time limit starts once it is ours
        return _fetch(pool, target, shown, sink, max_bytes, max_pixels, stall_timeout, time_limit)


def _fetch(
    pool: httpcore.ConnectionPool, target: httpx.URL, shown: str, sink: BinaryIO, max_bytes: int,
    max_pixels: int, stall_timeout: float, time_limit: float,
) -> FetchedImage:  # fmt: skip
    token = _deadline.set(time.monotonic() + time_limit)
    try:
        for hop in range(MAX_REDIRECTS + 1):
            where = shown if hop == 0 else f"{redact(str(target))} (redirected from {shown})"
            try:
                with pool.stream(
                    "GET",
                    _core_url(target),
                    headers=[(b"Host", target.netloc), *_HEADERS],
                    extensions={
                        "timeout": dict.fromkeys(("connect", "read", "write", "pool"),
                                                 stall_timeout)
                    },
                ) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        target = _redirect_target(target, response)
                        continue
                    _check_status(response.status)
                    size, digest, info = _receive(response, sink, max_bytes, max_pixels)
            except Exception as exc:
                failure = _failure(exc, where, stall_timeout, time_limit)
                if failure is None:
                    raise
                raise failure from exc
            return FetchedImage(
                size, digest, info.content_type, info.ext, info.width, info.height, shown
            )
        raise DownloadError(f"{shown}: more than {MAX_REDIRECTS} redirects")
    finally:
        _deadline.reset(token)


def redact(url: str) -> str:
    """`url` without its query string, fragment and credentials: safe to log and store."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl()


def _parse(url: str, shown: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise DownloadError(f"{shown}: not a valid URL ({exc})") from exc


def _core_url(url: httpx.URL) -> httpcore.URL:
    if url.scheme not in ("http", "https"):
        raise UnsafeUrlError(f"scheme {url.scheme!r} refused: only http and https are fetched")
    if not url.host:
        raise DownloadError("the URL has no host")
    if url.port is not None and not 0 < url.port < 65536:
        raise DownloadError(f"port {url.port} is out of range")
    return httpcore.URL(
        scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
    )


def _header(response: httpcore.Response, name: bytes) -> bytes | None:
    return next((v for k, v in response.headers if k.lower() == name), None)


def _redirect_target(current: httpx.URL, response: httpcore.Response) -> httpx.URL:
    location = _header(response, b"location")
    if not location:
        raise DownloadError(f"HTTP {response.status} redirect without a Location header")
    try:
        return current.join(location.decode("latin-1"))
    except httpx.InvalidURL as exc:
        raise DownloadError(f"redirect to an invalid URL ({exc})") from exc


def _check_status(status: int) -> None:
    if status == 200:
        return
    if status in (403, 404, 410):
        raise LinkExpiredError(f"HTTP {status}: the link has expired or is gone")
    if status in (408, 425, 429) or status >= 500:
        raise TransientDownloadError(f"HTTP {status}: the image host is busy or failing")
    raise DownloadError(f"HTTP {status}: not an image response (not retried)")


def _receive(
    response: httpcore.Response, sink: BinaryIO, max_bytes: int, max_pixels: int
) -> tuple[int, str, ImageInfo]:
    declared = _header(response, b"content-length")
    length = int(declared) if declared is not None else None  # h11 has validated it
    if length is not None and length > max_bytes:
        raise ImageRejectedError(f"Content-Length {length} is over the limit of {max_bytes} bytes"
                                 " (AFTERIMAGE_MAX_IMAGE_BYTES)")
    digest = hashlib.sha256()
    size, head, tail, info, next_sniff = 0, bytearray(), b"", None, 0
    for chunk in response.iter_stream():
        size += len(chunk)
        if size > max_bytes:
            raise ImageRejectedError(f"body is over the limit of {max_bytes} bytes"
                                     " (AFTERIMAGE_MAX_IMAGE_BYTES)")
        if info is None:
            head += chunk
            if len(head) >= next_sniff:  # sniff at doubling lengths: O(n) work in all
                info = sniff(bytes(head), max_pixels)
                next_sniff = 2 * len(head)
        digest.update(chunk)
        sink.write(chunk)
        tail = chunk[-TAIL_SIZE:] if len(chunk) >= TAIL_SIZE else (tail + chunk)[-TAIL_SIZE:]
        if info is not None and len(head) > 16:
            del head[16:]  # looks_complete needs only the start
    if info is None and (info := sniff(bytes(head), max_pixels)) is None:
        raise ImageRejectedError(f"the body ({size} bytes) ends before a complete image header")
    if not looks_complete(info.ext, bytes(head), tail, size):
        how = "no Content-Length" if length is None else f"Content-Length {length}"
        raise TransientDownloadError(f"the {info.ext} data ends early ({size} bytes, {how})")
    return size, digest.hexdigest(), info


def _failure(
    exc: Exception, where: str, stall_timeout: float, time_limit: float
) -> DownloadError | None:
    """The error to raise for `exc`, naming `where` (a URL without its query); None: not ours."""
    if isinstance(exc, DownloadError):
        return type(exc)(f"{where}: {exc}")
    if isinstance(exc, httpcore.TimeoutException):
        if _deadline.get() - time.monotonic() < 0.05:  # the deadline, not a stall
            return TransientDownloadError(
                f"{where}: timed out: still downloading at the time limit of {time_limit:g} s "
                "(AFTERIMAGE_DOWNLOAD_MIN_RATE)"
            )
        return TransientDownloadError(
            f"{where}: timed out: stalled, nothing for {stall_timeout:g} s "
            f"({type(exc).__name__}; AFTERIMAGE_DOWNLOAD_STALL_TIMEOUT)"
        )
    if isinstance(exc.__cause__ or exc.__context__, ssl.SSLCertVerificationError):
        return DownloadError(f"{where}: TLS certificate does not verify: {exc} (not retried)")
    if isinstance(exc, httpcore.NetworkError | httpcore.RemoteProtocolError):
        return TransientDownloadError(f"{where}: connection failed or cut: {exc}")
    if isinstance(exc, httpcore.UnsupportedProtocol | httpcore.LocalProtocolError):
        return DownloadError(f"{where}: request could not be made: {exc}")
    return None


def _budget(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float:
    left = _deadline.get() - time.monotonic()
    if left <= 0:
        raise expired("the download's time limit has passed")
    return left if timeout is None else min(timeout, left)


class _PinnedBackend(httpcore.NetworkBackend):
    """Resolves once, checks every address, connects only to a checked address."""

    def __init__(self, allow_cidrs: tuple[Network, ...]) -> None:
        self._allow_cidrs = allow_cidrs
        self._tcp = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        failures: list[httpcore.ConnectError] = []
        for address in resolve_allowed(host, port, self._allow_cidrs):
            budget = _budget(timeout, httpcore.ConnectTimeout)
            try:
                stream = self._tcp.connect_tcp(
                    str(address), port, budget, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # refused or unreachable: try the next one
                failures.append(exc)
                continue
            return _DeadlineStream(stream)
        raise failures[-1]


class _DeadlineStream(httpcore.NetworkStream):
    """Clamps every socket operation to the download's deadline; reads in large chunks."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        budget = _budget(timeout, httpcore.ReadTimeout)
        return self._inner.read(max(max_bytes, READ_SIZE), budget)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _budget(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        budget = _budget(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, budget))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
