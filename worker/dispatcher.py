"""The dispatcher: turns the receiver's durable inbox entries into ordinary RQ jobs.

The receiver records a callback and its inbox entry in one Redis script call and answers;
creating the RQ job (≈ 0.7 ms of CPU and two MULTI/EXEC round trips) happens here, off the
request path. An entry is acknowledged only after its job exists, and a job id is a function
of (provider, task, generation), so a redelivered entry never makes a second job.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, cast

import redis
from rq import Queue, Retry
from rq.job import Job

from afterimage import keys
from afterimage.components import run_loop
from afterimage.errors import UnknownProviderError
from afterimage.manifest import archive_job_id
from afterimage.schedule import urgent as urgent_task

log = logging.getLogger("afterimage.dispatcher")
ARCHIVE_FUNC = "worker.archive.archive_task"
RETRY_INTERVALS = [2, 5, 15, 30, 60, 120]
JOB_TIMEOUT = 600
CLAIM_IDLE_MS = 30_000
BLOCK_SECONDS = 1.0  # how long one read of the inbox waits for entries
MALFORMED_KEPT = 1000
Entry = tuple[bytes, dict[bytes, bytes]]
ENDED = frozenset(("finished", "failed", "stopped", "canceled"))  # RQ's JobStatus values


class Dispatcher:
    def __init__(self, client: redis.Redis, queue: Queue, urgent: Queue, retries: int,
                 name: str = "") -> None:
        self.redis = client
        self.queue = queue
        self.urgent = urgent
        self.retries = retries
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._claim_from = "0-0"
        self._grouped = False

    def ensure_group(self) -> None:
        """Make the inbox stream and its consumer group unless they exist."""
        try:
            self.redis.xgroup_create(keys.INBOX, keys.DISPATCH_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._grouped = True
        self._claim_from = "0-0"

    def run_once(self, block_ms: int = int(BLOCK_SECONDS * 1000), count: int = 200) -> int:
        """Dispatch what is waiting (and entries a dead dispatcher left); return how many."""
        if not self._grouped:
            self.ensure_group()
        try:
            return self._run_once(block_ms, count)
        except redis.ResponseError as exc:
            if not lost_group(exc):
                raise
            log.warning("dispatcher: the inbox stream or its group is gone (%s); making them "
                        "again", exc, extra={"event": "inbox_group_recreated"})
            self.ensure_group()
            return 0

    def _run_once(self, block_ms: int, count: int) -> int:
        reply: Any = self.redis.xreadgroup(
            keys.DISPATCH_GROUP, self.name, {keys.INBOX: ">"}, count=count, block=block_ms
        )
        entries: list[Entry] = [e for _, batch in (reply or []) for e in batch]
        if not entries:
            claimed: Any = self.redis.xautoclaim(
                keys.INBOX, keys.DISPATCH_GROUP, self.name, CLAIM_IDLE_MS,
                start_id=self._claim_from, count=count,
            )
            self._claim_from, entries = claimed[0], cast(list[Entry], claimed[1])
        if entries:
            self._dispatch(entries)
        return len(entries)

    def _dispatch(self, entries: list[Entry]) -> None:
        wanted = []
        now = time.time()
        malformed: list[tuple[bytes, dict[bytes, bytes], Exception]] = []
        for entry_id, f in entries:
            try:
                p, task_id, gen, expires = parse_entry(f)
            except (KeyError, ValueError) as exc:  # not written by transition.lua
                malformed.append((entry_id, f, exc))
                continue
            wanted.append((archive_job_id(p, task_id, gen), p, task_id, gen,
                           _is_urgent(p, expires, now)))
        if malformed:
            self._set_aside(malformed)
        pipe = self.redis.pipeline(transaction=False)
        for job_id, *_ in wanted:
            pipe.hget(Job.key_for(job_id), "status")
        statuses = pipe.execute()
        # A job still to run (or running) is not made twice. One that has ended is made again:
        # a task removed by retention and brought back by a late callback starts again at
        # generation 1, whose job may still be kept (result_ttl); for a redelivered entry the
        # new run finds nothing to do.
        fresh = {w[0]: w for w, s in zip(wanted, statuses, strict=True)
                 if s is None or s.decode() in ENDED}
        retry = Retry(max=self.retries, interval=RETRY_INTERVALS[: self.retries]) \
            if self.retries > 0 else None
        for queue, urgent in ((self.urgent, True), (self.queue, False)):
            jobs = [
                Queue.prepare_data(
                    ARCHIVE_FUNC, args=(p, task_id, gen), job_id=job_id, retry=retry,
                    timeout=JOB_TIMEOUT, result_ttl=3600, failure_ttl=7 * 86400,
                    description=f"archive {p} {task_id}",
                )
                for job_id, p, task_id, gen, u in fresh.values() if u is urgent
            ]
            if jobs:
                queue.enqueue_many(jobs)
        ids = [entry_id for entry_id, _ in entries]
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(keys.INBOX, keys.DISPATCH_GROUP, *ids)
        pipe.xdel(keys.INBOX, *ids)
        pipe.execute()
        for job_id, p, task_id, _gen, _urgent in fresh.values():
            log.debug("archive job %s created", job_id,
                      extra={"event": "job_created", "provider": p, "task_id": task_id,
                             "state": "queued"})
        log.info("dispatched %d job(s) from %d inbox entries", len(fresh), len(entries),
                 extra={"event": "dispatched"})

    def _set_aside(self, bad: list[tuple[bytes, dict[bytes, bytes], Exception]]) -> None:
        """Move entries that are not ours to read to ai:inbox:malformed (kept for a look, the
        newest MALFORMED_KEPT), so that they never hold up the rest of the inbox."""
        pipe = self.redis.pipeline(transaction=True)
        for entry_id, fields, exc in bad:
            kept: dict[Any, Any] = {**fields, b"inbox_id": entry_id,
                                    b"error": f"{type(exc).__name__}: {exc}"[:200]}
            pipe.xadd(keys.MALFORMED, kept, maxlen=MALFORMED_KEPT, approximate=True)
        ids = [entry_id for entry_id, _, _ in bad]
        pipe.xack(keys.INBOX, keys.DISPATCH_GROUP, *ids)
        pipe.xdel(keys.INBOX, *ids)
        pipe.execute()
        for entry_id, _, exc in bad:
            log.error("dispatcher: inbox entry %s is malformed (%s: %s); set aside in %s",
                      entry_id.decode(), type(exc).__name__, str(exc)[:200], keys.MALFORMED,
                      extra={"event": "inbox_malformed"})


def parse_entry(f: dict[bytes, bytes]) -> tuple[str, str, int, float | None]:
    """(provider, task id, generation, link expiry) of an inbox entry; KeyError or ValueError
    (UnicodeDecodeError is one) when the entry is not one lua/transition.lua writes."""
    provider, task_id, gen = f[b"p"].decode(), f[b"id"].decode(), int(f[b"g"])
    if not provider or not task_id:
        raise ValueError("empty provider or task id")
    return provider, task_id, gen, float(f[b"ea"]) if f.get(b"ea") else None


def lost_group(exc: redis.ResponseError) -> bool:
    """Whether Redis says a stream or its consumer group does not exist (any more)."""
    text = str(exc)
    return text.startswith("NOGROUP") or "UNBLOCKED" in text


def _is_urgent(provider: str, expires: float | None, now: float) -> bool:
    """schedule.urgent; a provider this process does not know is not urgent."""
    try:
        return urgent_task(provider, expires, now)
    except UnknownProviderError:
        return False


def run_forever(dispatcher: Dispatcher, stop: threading.Event) -> None:
    """Dispatch until `stop` is set, surviving any error (afterimage.components)."""

    def step() -> float:
        dispatcher.run_once()
        return 0.0

    run_loop("dispatcher", dispatcher.redis, step, stop)
