"""Baseline jobs the archive benchmarks run through the same RQ workers as the real one, and
a worker launcher that can swap RQ's worker class.

    python -m bench.jobs worker --name NAME [--forking]
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import boto3
import httpx
from botocore.config import Config

_clients: dict[str, Any] = {}


def _s3() -> Any:
    """One boto3 client per process, made in the process that uses it."""
    key = f"s3-{os.getpid()}"
    if key not in _clients:
        _clients[key] = boto3.client(
            "s3", endpoint_url=os.environ["AFTERIMAGE_S3_ENDPOINT_URL"],
            config=Config(request_checksum_calculation="when_required",
                          response_checksum_validation="when_required",
                          s3={"addressing_style": "path"}))
    return _clients[key]


def _http() -> httpx.Client:
    key = f"http-{os.getpid()}"
    if key not in _clients:
        _clients[key] = httpx.Client(timeout=30)
    client: httpx.Client = _clients[key]
    return client


def empty() -> None:
    """Nothing: what the worker itself costs per job."""


def minimal_archive(bucket: str, key: str, url: str) -> int:
    """The I/O of archiving one image and nothing else: GET it, PUT it, PUT a small manifest."""
    data = _http().get(url).raise_for_status().content
    s3 = _s3()
    s3.put_object(Bucket=bucket, Key=f"{key}/0.png", Body=data, ContentType="image/png")
    manifest = json.dumps({"key": f"{key}/0.png", "bytes": len(data)}).encode()
    s3.put_object(Bucket=bucket, Key=f"{key}/manifest.json", Body=manifest,
                  ContentType="application/json")
    return len(data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["worker"])
    parser.add_argument("--name", required=True)
    parser.add_argument("--forking", action="store_true",
                        help="RQ's default Worker (a fork per job) instead of SimpleWorker")
    args = parser.parse_args()
    from afterimage.cli.base import effective_settings
    from afterimage.logs import setup_logging
    from worker import runner

    if args.forking:
        from rq import Worker

        class ForkingWorker(Worker):  # type: ignore[misc]
            """RQ's default worker (a fork per job), built the way run_worker builds its own."""

            def __init__(self, *a: Any, stop: Any, **kw: Any) -> None:
                super().__init__(*a, **kw)
                self.stop = stop

            def request_stop(self, signum: Any, frame: Any) -> None:
                self.stop.set()  # as ArchiveWorker does: run_worker ends on it
                super().request_stop(signum, frame)

        runner.ArchiveWorker = ForkingWorker  # type: ignore[misc]
    settings = effective_settings()
    setup_logging(settings.log_level)
    runner.run_worker(settings, name=args.name)


if __name__ == "__main__":
    main()
