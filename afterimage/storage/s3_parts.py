"""Put-once for large bodies: a hand-driven S3 multipart upload with parts sent in parallel.

Each part is its own byte range of the seekable body: a view that botocore reads in small
blocks with `os.pread` on the body's descriptor (so memory does not grow with part size or
concurrency), else the range's bytes, read under a lock (bodies without a descriptor are in
memory anyway). The upload completes with `If-None-Match: *`; on any failure or a conflict it
is aborted, so no parts linger. botocore's errors pass through for the caller to translate.
Every part carries its SHA-256 (`checksums`); a part the store refuses as damaged on the way is
sent again, and the store keeps the composite checksum of the object.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from botocore.exceptions import BotoCoreError, ClientError

from afterimage.errors import StorageError
from afterimage.storage.checksums import digests, resending

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger("afterimage.storage")
MAX_PARTS = 10_000


def is_conflict(exc: ClientError) -> bool:
    """True if a conditional write failed because the key exists (or is being written)."""
    code = exc.response.get("Error", {}).get("Code", "")
    return code in ("PreconditionFailed", "ConditionalRequestConflict")


def put_in_parts(
    s3: S3Client, bucket: str, key: str, body: BinaryIO, size: int, content_type: str,
    metadata: Mapping[str, str], *, sha256: str | None, part_size: int, concurrency: int,
    attempts: int,
) -> bool:  # fmt: skip
    """Upload `size` bytes of `body` to `key` unless it exists; True if written. Each part
    carries its SHA-256; `sha256` (hex), if given, is checked against the whole body first."""
    part_size = max(part_size, -(-size // MAX_PARTS))
    _, checksums = digests(body, size, part_size, sha256)
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key=key, ContentType=content_type, Metadata=dict(metadata),
        ChecksumAlgorithm="SHA256",
    )["UploadId"]  # fmt: skip
    written = False
    try:
        parts = _send_parts(s3, bucket, key, upload_id, body, size, part_size, checksums,
                            concurrency, attempts)
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )  # fmt: skip
        written = True
    except ClientError as exc:
        if not is_conflict(exc):
            raise
    finally:
        if not written:
            _abort(s3, bucket, key, upload_id)
    return written


def _send_parts(
    s3: S3Client, bucket: str, key: str, upload_id: str, body: BinaryIO, size: int,
    part_size: int, checksums: list[str], concurrency: int, attempts: int,
) -> list[CompletedPartTypeDef]:  # fmt: skip
    part_body = _part_bodies(body, size)

    def send(number: int) -> CompletedPartTypeDef:
        offset = (number - 1) * part_size
        length = min(part_size, size - offset)
        checksum = checksums[number - 1]
        etag = resending(attempts, f"part {number} of {key}", lambda: s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
            Body=part_body(offset, length), ContentLength=length, ChecksumSHA256=checksum,
        ))["ETag"]  # fmt: skip
        return {"PartNumber": number, "ETag": etag, "ChecksumSHA256": checksum}

    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="s3-part")
    try:
        futures = [pool.submit(send, n) for n in range(1, -(-size // part_size) + 1)]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future.done() and future.exception() is not None:
                future.result()  # raise the first failure without waiting for the rest
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _abort(s3: S3Client, bucket: str, key: str, upload_id: str) -> None:
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except (BotoCoreError, ClientError) as exc:
        log.warning("could not abort multipart upload %s of %s: %s", upload_id, key, exc)


def _part_bodies(body: BinaryIO, size: int) -> Callable[[int, int], BinaryIO | bytes]:
    """Bodies for byte ranges of `body`, safe to use from many threads at once.

    With a file descriptor, a part is a view that botocore reads in small blocks (to sign and
    to send), so memory does not grow with part size x concurrency; otherwise (BytesIO and the
    like, already in memory) it is the range's bytes.
    """
    try:
        body.flush()
        fd = body.fileno()
    except (OSError, ValueError, AttributeError):  # no descriptor
        lock = threading.Lock()

        def read(offset: int, length: int) -> bytes:
            with lock:
                body.seek(offset)
                data = body.read(length)
                while len(data) < length:
                    more = body.read(length - len(data))
                    if not more:
                        raise StorageError(f"body ended at byte {offset + len(data)} of {size}")
                    data += more
            return data

        return read
    return lambda offset, length: cast(BinaryIO, _PartView(fd, offset, length, size))


class _PartView(io.RawIOBase):
    """Bytes [offset, offset + length) of a file, read with os.pread: seekable, and never
    held in memory whole."""

    def __init__(self, fd: int, offset: int, length: int, size: int) -> None:
        super().__init__()
        self._fd, self._start, self._length, self._size = fd, offset, length, size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        left = self._length - self._pos
        wanted = left if size is None or size < 0 else min(size, left)
        if wanted == 0:
            return b""
        data = os.pread(self._fd, wanted, self._start + self._pos)
        if not data:
            raise StorageError(f"body ended at byte {self._start + self._pos} of {self._size}")
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
