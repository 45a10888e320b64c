"""Stored images read back from the bucket and checked against the SHA-256 the CDN served."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3

KeyOf = Callable[[Any], str]  # an S3 client -> the key image n is stored at


def wrong_images(s3_url: str, bucket: str, keys: dict[int, KeyOf], want: dict[int, str]
                 ) -> list[str]:
    """What is missing or not the CDN's bytes (`want`: image n's SHA-256)."""
    s3: Any = boto3.client("s3", endpoint_url=s3_url)

    def check(n: int) -> str | None:
        try:
            key = keys[n](s3)
            got = hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception as exc:
            return f"{n}: {type(exc).__name__}: {exc}"
        return None if got.hexdigest() == want[n] else f"{n}: {key} has other bytes"

    with ThreadPoolExecutor(8) as pool:
        return [w for w in pool.map(check, list(keys)) if w]


def from_manifest(bucket: str, prefix: str, sha: str) -> KeyOf:
    """The image's key as `<prefix>manifest.json` records it; the SHA-256 recorded there must
    be the CDN's too."""

    def read(s3: Any) -> str:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}manifest.json")["Body"]
        images = json.loads(body.read())["images"]
        if len(images) != 1 or images[0]["sha256"] != sha:
            raise ValueError(f"{prefix}manifest.json records {images}")
        key: str = images[0]["key"]
        return key

    return read


def fixed(key: str) -> KeyOf:
    return lambda _s3: key
