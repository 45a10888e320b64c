"""SHA-256 checksums as S3 carries them (`x-amz-checksum-sha256`: base64 of the raw digest).

A single PUT carries the object's own SHA-256, which the worker took while downloading; a
multipart upload carries each part's, and the store keeps their composite. The store verifies
each against the bytes it received and refuses a mismatch (`BadDigest`), so a body damaged on
the way is never stored. Part digests are taken in one pass over the spooled body that also
checks the whole body against the digest taken while downloading, so a spool that changed
meanwhile is refused too.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from botocore.exceptions import ClientError

from afterimage.errors import StorageError

T = TypeVar("T")
log = logging.getLogger("afterimage.storage")
_READ = 1024 * 1024
# The store found that the body it received does not match what the request said it was.
DAMAGED = frozenset({"BadDigest", "XAmzContentSHA256Mismatch"})


def b64(hex_digest: str) -> str:
    """The base64 form S3 uses, of a hex SHA-256 digest."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def is_damaged(exc: ClientError) -> bool:
    """True if the store refused a body because it did not match its checksum."""
    return exc.response.get("Error", {}).get("Code", "") in DAMAGED


def resending(attempts: int, what: str, send: Callable[[], T]) -> T:
    """`send()`, made again while the store refuses the body as damaged on the way (at most
    `attempts` times in all); any other error, or the last refusal, is raised."""
    attempt = 1
    while True:
        try:
            return send()
        except ClientError as exc:
            if not is_damaged(exc) or attempt >= attempts:
                raise
            attempt += 1
            log.warning("S3 %s: the store refused the body as damaged on the way (%s); "
                        "sending it again", what, exc.response["Error"]["Code"])


def digests(
    body: BinaryIO, size: int, part_size: int, expected: str | None
) -> tuple[str, list[str]]:
    """Base64 SHA-256 of the whole body and of each `part_size` part, read once from the start.

    StorageError if the body does not hold `size` bytes or, when `expected` (hex) is given, if
    its digest differs from it. The body is left at its start.
    """
    whole, parts = hashlib.sha256(), []
    body.seek(0)
    read = 0
    while read < size:
        part, left = hashlib.sha256(), min(part_size, size - read)
        while left:
            chunk = body.read(min(_READ, left))
            if not chunk:
                raise StorageError(f"body held {read} bytes, not the {size} announced")
            part.update(chunk)
            whole.update(chunk)
            left -= len(chunk)
            read += len(chunk)
        parts.append(base64.b64encode(part.digest()).decode())
    if body.read(1):
        raise StorageError(f"body holds more than the {size} bytes announced")
    body.seek(0)
    if expected is not None and whole.hexdigest() != expected.lower():
        raise StorageError(
            f"body's SHA-256 {whole.hexdigest()} is not the {expected} taken while downloading"
        )
    return base64.b64encode(whole.digest()).decode(), parts
