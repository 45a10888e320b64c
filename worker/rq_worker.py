"""ArchiveWorker: an RQ worker that runs up to `slots` jobs at once, each in its own thread.

A job spends nearly all its time waiting on the network (the image host, the store), so one
process keeps many in flight: AFTERIMAGE_ARCHIVE_CONCURRENCY of them. RQ's own loop still
dequeues and records every job; ArchiveWorker changes only where `perform_job` runs:

* a place (a slot) is reserved *before* a job is taken from its queue, so a job never waits
  in this process between its queue and its start: while every slot is busy the queue keeps it,
  for another worker to take;
* the job runs in a thread of its own (`execute_job`), and its result, retry or failure is
  recorded by RQ exactly as when it ran in the loop's thread;
* a job's time limit is enforced by a timer (RQ's TimerDeathPenalty) rather than SIGALRM,
  which only the main thread can receive;
* on stop (SIGTERM/SIGINT, or the end of a burst) no job is taken any more, and `teardown`
  waits for the jobs in flight before the worker says it is gone.

Heartbeats: RQ finds the job of a worker that died (SIGKILL, OOM, power) only once the job's
heartbeat lapses, and SimpleWorker sets that to the job timeout + 60 s and never refreshes it
while the job runs. ArchiveWorker keeps it at HEARTBEAT_TTL and refreshes it from a thread
while the job runs, so the next maintenance pass of any worker finds a dead worker's jobs within
about HEARTBEAT_TTL + MAINTENANCE_INTERVAL seconds; RQ then retries them (they have retries
left) or fails them. RQ has no public hook for either: ArchiveWorker overrides `perform_job`,
`execute_job`, `dequeue_job_and_maintain_ttl` and `teardown`, and calls `maintain_heartbeats`,
RQ methods whose signatures changed in 3.0 (each gained the job's `Execution`), and replaces
`subscribe` (below); so pyproject.toml allows rq 3.x only, and tests/worker/test_recovery.py
and tests/worker/test_concurrency.py check them on the RQ installed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.timeouts import TimerDeathPenalty

from worker.memory import give_back

log = logging.getLogger("afterimage.worker")
HEARTBEAT_TTL = 20  # a running job's heartbeat lapses this long after its worker died
HEARTBEAT_EVERY = 5.0
PUBSUB_WAKE = 1.0


class Slots:
    """At most `size` jobs running at once, each in a thread; a place is reserved first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = threading.Semaphore(size)
        self._lock = threading.Lock()
        self._running: set[threading.Thread] = set()

    def reserve(self, timeout: float) -> bool:
        return self._free.acquire(timeout=timeout)

    def unreserve(self) -> None:
        self._free.release()

    def start(self, name: str, work: Callable[[], object]) -> None:
        """Run `work` in a new thread on the place reserved for it."""

        def run() -> None:
            try:
                work()
            except Exception:  # RQ records a job's own failure: this is RQ's bookkeeping failing
                log.exception("worker: %s ended with an error; its heartbeat lapses and "
                              "RQ retries or fails it", name)
            finally:
                with self._lock:
                    self._running.discard(thread)
                self._free.release()

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._running.add(thread)
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self._running.discard(thread)
            self._free.release()
            raise

    def drain(self) -> None:
        """Wait for every job in flight."""
        while True:
            with self._lock:
                left = next(iter(self._running), None)
            if left is None:
                return
            left.join()


class ArchiveWorker(SimpleWorker):
    """SimpleWorker running up to `slots` jobs at once, with short job heartbeats (see the
    module docstring)."""

    death_penalty_class = TimerDeathPenalty

    def __init__(self, *args: Any, stop: threading.Event, slots: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop = stop  # set by SIGTERM/SIGINT (RQ's own flag misses a stop while idle)
        self.slots = Slots(slots)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return HEARTBEAT_TTL

    def subscribe(self) -> None:
        """RQ's, with a pub/sub thread that wakes every PUBSUB_WAKE s instead of 60: redis-py
        8 joins that thread when it is stopped, so a worker told to stop waited up to a
        minute for it (and `afterimage up` then killed it)."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        thread: Any = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_WAKE, daemon=True,
            exception_handler=self._pubsub_exception_handler)
        self.pubsub_thread = thread

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """RQ's, once a slot is free: while every slot is busy, the job stays in its queue."""
        while not self.slots.reserve(HEARTBEAT_EVERY):
            if self.stop.is_set():
                raise StopRequested()
            self.heartbeat()  # this worker is alive, only busy
        if self.stop.is_set():
            self.slots.unreserve()
            raise StopRequested()
        try:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        except BaseException:
            self.slots.unreserve()
            raise
        if result is None:
            self.slots.unreserve()
        return result

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Start `job` on the slot reserved for it; the loop goes on to the next one."""
        try:
            execution = self.prepare_execution(job)
        except BaseException:
            self.slots.unreserve()
            raise
        self.slots.start(f"job-{job.id}", lambda: self.perform_job(job, queue, execution))

    def perform_job(self, job: Job, queue: Queue, execution: Any) -> bool:
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, execution, stop), daemon=True,
                                name="job-heartbeat")
        beat.start()
        try:
            return bool(super().perform_job(job, queue, execution))
        finally:
            stop.set()
            beat.join()
            give_back()

    def _beat(self, job: Job, execution: Any, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_EVERY):
            try:
                self.maintain_heartbeats(job, execution)
            except redis.RedisError as exc:
                log.warning("job %s: heartbeat failed (%s)", job.id, exc)

    def teardown(self) -> None:
        """Finish the jobs in flight, then leave as RQ does."""
        self.slots.drain()
        super().teardown()  # type: ignore[no-untyped-call]
