"""Per-process resources for jobs, made lazily inside the process that uses them."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import cached_property

import httpx
import redis

from afterimage import redis_client
from afterimage.ledger import Ledger
from afterimage.metrics import Tally, flush
from afterimage.provider_api import new_client
from afterimage.settings import Settings
from afterimage.storage import ObjectStore, open_store
from afterimage.storage.probe import CheckedStore
from worker.download import DownloadClient
from worker.spool import MemoryBudget

log = logging.getLogger("afterimage.worker")


@dataclass
class Context:
    settings: Settings

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client.connect(self.settings)

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.redis)

    @cached_property
    def store(self) -> ObjectStore:
        store = open_store(self.settings.storage_url, self.settings.s3_endpoint_url,
                           writers=self.settings.archive_concurrency)
        return CheckedStore(store)  # checked for put-once before its first write

    @cached_property
    def downloads(self) -> DownloadClient:
        """Connections to image hosts, shared by the jobs in flight (AFTERIMAGE_DOWNLOAD_PER_HOST
        of them at most to one host)."""
        s = self.settings
        return DownloadClient(max_connections=s.archive_concurrency, per_host=s.download_per_host)

    @cached_property
    def memory(self) -> MemoryBudget:
        """What image bodies may hold in memory at once (AFTERIMAGE_ARCHIVE_MEMORY_BYTES)."""
        return MemoryBudget(self.settings.archive_memory)

    @cached_property
    def provider_http(self) -> httpx.Client:
        return new_client()

    @cached_property
    def notify_http(self) -> httpx.Client:
        """For completion events: redirects are never followed."""
        return httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)

    @cached_property
    def tally(self) -> Tally:
        """This process's metric counts, written to Redis after each job."""
        return Tally()

    def flush_metrics(self) -> None:
        """Write the gathered counts (kept for the next job if Redis is away)."""
        try:
            flush(self.tally, self.redis)
        except redis.RedisError as exc:
            log.warning("metrics not written, kept for later: %s", exc)


_lock = threading.Lock()
_current: tuple[int, Context] | None = None


def context() -> Context:
    """This process's context (made again after a fork)."""
    global _current
    with _lock:
        if _current is None or _current[0] != os.getpid():
            _current = (os.getpid(), Context(Settings.from_env()))
        return _current[1]


def install(ctx: Context) -> None:
    """Use `ctx` in this process (the CLI builds one from its own settings)."""
    global _current
    with _lock:
        _current = (os.getpid(), ctx)
