"""The baseline of the large-image benchmark: stream a URL into a bucket with httpx and boto3's
upload_fileobj, and nothing else. Prints one JSON line: seconds, bytes, peak RSS.

    python -m bench.plain_upload URL BUCKET KEY   (S3 endpoint from AFTERIMAGE_S3_ENDPOINT_URL)
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator

import boto3
import httpx
from botocore.config import Config

from bench.common import memory_kib


class StreamReader:
    """A read()-able view of an iterator of byte chunks (upload_fileobj reads from it)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


def main() -> None:
    url, bucket, key = sys.argv[1:4]
    s3 = boto3.client("s3", endpoint_url=os.environ["AFTERIMAGE_S3_ENDPOINT_URL"],
                      config=Config(request_checksum_calculation="when_required",
                                    response_checksum_validation="when_required",
                                    s3={"addressing_style": "path"}))
    s3.head_bucket(Bucket=bucket)  # connect and sign once, as a warm worker would have
    http = httpx.Client(timeout=60)
    started = time.perf_counter()
    size = 0
    with http.stream("GET", url) as response:
        response.raise_for_status()
        size = int(response.headers["content-length"])
        s3.upload_fileobj(StreamReader(response.iter_bytes()), bucket, key,
                          ExtraArgs={"ContentType": "image/png"})
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "bytes": size, **memory_kib(os.getpid())}))


if __name__ == "__main__":
    main()
