"""S3 and S3-compatible backend: put-once by conditional write, every object with its SHA-256.

PutObject and CompleteMultipartUpload carry `If-None-Match: *`; the store answers 412
PreconditionFailed (or 409 ConditionalRequestConflict while a competing write is in flight) when
the key exists, and `put_once` returns False. AWS, MinIO, SeaweedFS and moto honour the header
on both calls: a second PutObject or CompleteMultipartUpload onto an existing key gets 412 and
leaves the first object (tests/storage, against SeaweedFS). Racing PutObjects of one new key
leave one version; racing multipart completes of one new key may all succeed on SeaweedFS
4.48, so there put-once rests on one archive job per task and generation. Bodies up to
`multipart_threshold` cost exactly one PUT. Larger ones first HEAD the key,
only to skip uploading a duplicate, then go up in parallel parts (see `s3_parts`). A 412 after a
retried request whose first attempt did land also reads as "already there"; the object then
holds this very body.

Every write carries a SHA-256 checksum (see `checksums`): a body damaged on the way is refused
by the store (`BadDigest`) and sent again, up to `max_attempts` times, and never stored.

A client is made lazily (boto3 itself is imported then) and again after a fork (boto3 clients
are not fork-safe); the threads of one process share it. With a custom endpoint, requests use
path-style addressing (MinIO).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from afterimage.errors import StorageError
from afterimage.storage.base import CHUNK, ObjectInfo, join_key
from afterimage.storage.checksums import b64, digests, resending
from afterimage.storage.s3_parts import is_conflict, put_in_parts

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code", "") in _MISSING


class S3Store:
    """Objects in `bucket` under `prefix`; bodies over `multipart_threshold` go in parts,
    `concurrency` at a time; `writers` threads may use it at once."""

    def __init__(
        self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
        multipart_threshold: int = 16 * MiB, part_size: int = 8 * MiB, concurrency: int = 6,
        connect_timeout: float = 5.0, read_timeout: float = 60.0, max_attempts: int = 3,
        writers: int = 1,
    ) -> None:  # fmt: skip
        if part_size < 5 * MiB:
            raise ValueError("S3 parts must be at least 5 MiB")
        self.bucket, self.prefix, self.endpoint_url = bucket, prefix, endpoint_url
        self.multipart_threshold, self.part_size = multipart_threshold, part_size
        self.concurrency, self.max_attempts = concurrency, max_attempts
        self._options: dict[str, Any] = {
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "retries": {"mode": "standard", "max_attempts": max_attempts},
            "connect_timeout": connect_timeout, "read_timeout": read_timeout,
            "max_pool_connections": writers + concurrency + 2, "tcp_keepalive": True,
            # Every write carries its x-amz-checksum-sha256, which the signature covers and
            # the store verifies: hashing the body once more for SigV4 (what botocore does over
            # plain HTTP) would add nothing but a second pass over every image.
            "s3": {"payload_signing_enabled": False,
                   **({"addressing_style": "path"} if endpoint_url else {})},
        }  # fmt: skip
        self._client: tuple[int, S3Client] | None = None
        self._lock = threading.Lock()

    def key(self, *parts: str) -> str:
        return join_key(self.prefix, *parts)

    def put_once(
        self, key: str, body: BinaryIO, size: int, content_type: str, metadata: Mapping[str, str],
        *, sha256: str | None = None,
    ) -> bool:  # fmt: skip
        s3 = self._s3()
        if size > self.multipart_threshold:
            if self.head(key) is not None:
                return False
            with self._errors(f"multipart upload of {key}"):
                return put_in_parts(
                    s3, self.bucket, key, body, size, content_type, metadata, sha256=sha256,
                    part_size=self.part_size, concurrency=self.concurrency,
                    attempts=self.max_attempts,
                )  # fmt: skip
        digest = b64(sha256) if sha256 else digests(body, size, max(size, 1), None)[0]
        def put() -> object:
            body.seek(0)
            return s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentLength=size,
                ContentType=content_type, Metadata=dict(metadata), ChecksumSHA256=digest,
                IfNoneMatch="*",
            )  # fmt: skip

        with self._errors(f"put {key}"):
            try:
                resending(self.max_attempts, f"put {key}", put)
            except ClientError as exc:
                if is_conflict(exc):
                    return False
                raise
        return True

    def head(self, key: str) -> ObjectInfo | None:
        with self._errors(f"head {key}"):
            try:
                got = self._s3().head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise
        content_type = got.get("ContentType", "binary/octet-stream")
        return ObjectInfo(got["ContentLength"], content_type, dict(got.get("Metadata", {})))

    def get(self, key: str) -> bytes:
        with self._errors(f"get {key}"):
            try:
                return self._s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if _missing(exc):
                    raise KeyError(key) from exc
                raise

    def stream(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]] | None:
        with self._errors(f"get {key}"):
            try:
                got = self._s3().get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise
        content_type = got.get("ContentType", "binary/octet-stream")
        info = ObjectInfo(got["ContentLength"], content_type, dict(got.get("Metadata", {})))
        return info, self._chunks(got["Body"], key)

    def _chunks(self, body: StreamingBody, key: str) -> Iterator[bytes]:
        with closing(body), self._errors(f"read {key}"):
            yield from body.iter_chunks(CHUNK)

    def ping(self) -> None:
        with self._errors("reach the bucket"):
            self._s3().head_bucket(Bucket=self.bucket)

    def where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint_url or 'AWS'}"

    def _s3(self) -> S3Client:
        made = self._client
        if made is not None and made[0] == os.getpid():
            return made[1]
        with self._lock:  # one client for all threads: each costs ~12 MB (its service model)
            return self._make_client()

    def _make_client(self) -> S3Client:
        made = self._client
        if made is None or made[0] != os.getpid():
            # boto3 is imported here, at the first request: a receiver that never reads the
            # bucket does not carry it (about 25 MB).
            import boto3
            from botocore.config import Config

            session = boto3.session.Session()
            client = session.client("s3", endpoint_url=self.endpoint_url,
                                    config=Config(**self._options))
            made = self._client = (os.getpid(), client)
        return made[1]

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn botocore's errors into StorageError, naming the operation and the endpoint."""
        where = self.where()
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            detail = f"{exc.operation_name}: {error.get('Code', '?')} {error.get('Message', '')}"
            raise StorageError(f"S3 {what} failed ({where}): {detail.strip()}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {what} failed ({where}): {exc}") from exc
