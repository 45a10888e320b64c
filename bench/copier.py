"""The baseline of the burst benchmark: a plain asyncio copier. 32 images at a time (a
semaphore), each read whole into memory with an httpx streaming GET, then stored with boto3's
put_object in a thread (no checksum, no condition). Prints one JSON line: when the first GET
left and the last PUT ended (time.time()), images and bytes copied, peak RSS (VmHWM, KiB).

    python -m bench.copier CDN_URL COUNT BUCKET   (S3 endpoint from AFTERIMAGE_S3_ENDPOINT_URL)

Image n is CDN_URL/img/{n}.png, stored as copier/{n}.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
from botocore.config import Config

from bench.common import memory_kib

CONCURRENCY = 32


async def copy_all(cdn: str, count: int, bucket: str) -> dict[str, Any]:
    s3: Any = boto3.client(
        "s3", endpoint_url=os.environ["AFTERIMAGE_S3_ENDPOINT_URL"],
        config=Config(request_checksum_calculation="when_required",
                      response_checksum_validation="when_required",
                      max_pool_connections=CONCURRENCY, s3={"addressing_style": "path"}))
    s3.head_bucket(Bucket=bucket)  # connect and sign once
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(CONCURRENCY))
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def one(n: int) -> int:
            async with gate:
                async with http.stream("GET", f"{cdn}/img/{n}.png") as response:
                    response.raise_for_status()
                    body = await response.aread()
                await asyncio.to_thread(s3.put_object, Bucket=bucket, Key=f"copier/{n}.png",
                                        Body=body, ContentType="image/png")
                return len(body)

        started = time.time()
        sizes = await asyncio.gather(*(one(n) for n in range(count)))
        ended = time.time()
    return {"started": started, "ended": ended, "images": len(sizes), "bytes": sum(sizes)}


def main() -> None:
    cdn, count, bucket = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    got = asyncio.run(copy_all(cdn.rstrip("/"), count, bucket))
    print(json.dumps({**got, **memory_kib(os.getpid())}))


if __name__ == "__main__":
    main()
