"""The start-up check: the store must refuse a second write of one key.

Put-once rests on the store: S3 stores are asked with `If-None-Match: *`, and one that ignores
the header overwrites silently, so a replay could leave a second version of an archived image
or manifest. At start afterimage writes a probe object under its prefix twice; the second
write must be refused. The probe is one small object, `<prefix>/afterimage-put-once-probe`,
written once per store and left in place (later starts find it and are refused both times).

A worker whose store cannot be reached at start goes on (its jobs back off as in any outage);
its store is a `CheckedStore`, which runs the check before the first write of the process.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from afterimage.errors import ConfigError
from afterimage.storage.base import ObjectInfo, ObjectStore

PROBE = "afterimage-put-once-probe"
BODY = b"afterimage checks at start that this store refuses a second write of one key.\n"
_passed: set[tuple[int, str]] = set()  # (process, store and probe key) that passed the check
_lock = threading.Lock()


def check_put_once(store: ObjectStore) -> None:
    """ConfigError, in one line naming the store, if `store` lets a key be written twice;
    StorageError if it cannot be asked."""
    key = store.key(PROBE)
    sha256 = hashlib.sha256(BODY).hexdigest()
    written = False
    for _ in range(2):
        written = store.put_once(key, io.BytesIO(BODY), len(BODY), "text/plain", {},
                                 sha256=sha256)
    if written:
        raise ConfigError(
            f"the store ({store.where()}) accepted a second write of {key}: it ignores "
            "If-None-Match: *, so archived objects could be overwritten; afterimage will not "
            "start on it (use AWS S3, MinIO, SeaweedFS or another store that refuses the write)"
        )
    with _lock:
        _passed.add(_identity(store))


def _identity(store: ObjectStore) -> tuple[int, str]:
    return os.getpid(), f"{store.where()} {store.key(PROBE)}"


class CheckedStore:
    """`store`, whose first write in this process waits for `check_put_once` to pass (unless
    it already has, at start); a failed check raises from that write."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._lock = threading.Lock()

    def key(self, *parts: str) -> str:
        return self.store.key(*parts)

    def put_once(
        self, key: str, body: BinaryIO, size: int, content_type: str, metadata: Mapping[str, str],
        *, sha256: str | None = None,
    ) -> bool:  # fmt: skip
        if _identity(self.store) not in _passed:
            with self._lock:
                if _identity(self.store) not in _passed:
                    check_put_once(self.store)
        return self.store.put_once(key, body, size, content_type, metadata, sha256=sha256)

    def head(self, key: str) -> ObjectInfo | None:
        return self.store.head(key)

    def get(self, key: str) -> bytes:
        return self.store.get(key)

    def stream(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]] | None:
        return self.store.stream(key)

    def ping(self) -> None:
        self.store.ping()

    def where(self) -> str:
        return self.store.where()
