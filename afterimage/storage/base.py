"""The archive store: a narrow put-once interface, and `open_store` to pick a backend by URL.

Objects are written once. `put_once` never overwrites and never leaves a partial object
visible under its key, so a replay or a duplicate callback cannot leave two versions behind.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from afterimage.errors import ConfigError

CHUNK = 256 * 1024  # bytes per chunk of `stream`


@dataclass(frozen=True)
class ObjectInfo:
    """What `head` tells about a stored object."""

    size: int
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)


class ObjectStore(Protocol):
    """Where archived objects go. Every method raises StorageError when the store fails."""

    def key(self, *parts: str) -> str:
        """The full key `<prefix>/<parts...>` (no leading slash when the prefix is empty)."""
        ...

    def put_once(
        self, key: str, body: BinaryIO, size: int, content_type: str, metadata: Mapping[str, str],
        *, sha256: str | None = None,
    ) -> bool:  # fmt: skip
        """Store `size` bytes of `body` (seekable, at 0) unless `key` exists; True if written.
        `sha256` (hex) is the body's digest if known: a body that does not match it is refused
        (StorageError) and never stored; S3 stores keep it as the object's checksum."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Size, content type and user metadata of `key`, or None if it does not exist."""
        ...

    def get(self, key: str) -> bytes:
        """The whole (small) object; KeyError if it does not exist."""
        ...

    def stream(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]] | None:
        """`key`'s info and its bytes in chunks of at most CHUNK, or None if it does not exist.
        The iterator holds a file or a connection until it is exhausted or closed."""
        ...

    def ping(self) -> None:
        """Raise StorageError unless the store is reachable."""
        ...

    def where(self) -> str:
        """The store in words, for messages: `bucket 'b' at http://...`, `directory /srv/a`."""
        ...


def join_key(prefix: str, *parts: str) -> str:
    """`prefix/part/...`; a part may not be empty, `.`, `..` or contain a slash."""
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\x00" in part:
            raise ValueError(f"bad object key part: {part!r}")
    return "/".join((prefix, *parts) if prefix else parts)


@functools.cache
def open_store(url: str, endpoint_url: str | None, *, writers: int = 1) -> ObjectStore:
    """The store named by `s3://bucket[/prefix]` or `file:///abs/dir`; one per process for each
    (a worker's start-up check and its jobs share one S3 client: each costs ~12 MB). `writers`:
    how many threads use it at once (an S3 client keeps a connection for each)."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigError(f"storage URL must not have a query or fragment: {url!r}")
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not bucket or any(c in bucket for c in "@:/ "):
            raise ConfigError(f"storage URL needs a bucket, as in s3://bucket/prefix: {url!r}")
        try:
            prefix = join_key("", *(p for p in unquote(parts.path).split("/") if p))
        except ValueError as exc:
            raise ConfigError(f"bad prefix in storage URL {url!r}: {exc}") from exc
        from afterimage.storage.s3 import S3Store

        return S3Store(bucket, prefix, endpoint_url=endpoint_url, writers=writers)
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/") or path == "/":
            raise ConfigError(f"storage URL must be file:///absolute/dir: {url!r}")
        from afterimage.storage.file import FileStore

        return FileStore(path)
    raise ConfigError(f"storage URL must be s3://bucket[/prefix] or file:///abs/dir: {url!r}")
