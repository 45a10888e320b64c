"""Getting a dead worker's work done: due retries and stranded tasks (the short job
heartbeats that let RQ find a dead worker's jobs are worker.rq_worker's).

Due retries are moved to their queue by `promote_due`, from a thread of every worker, in
place of RQ's scheduler: that one is a forked process that outlives a worker killed with
SIGKILL, and its lock keeps every other worker from scheduling for a minute after it dies.

`rescue` is the net under both: a task `queued` for RESCUE_AFTER seconds whose archive job is
gone, finished, lost between a queue and a worker, or failed is dispatched again (the first
three) or ends `archive_failed`, replayable (the last). It runs in one worker at a time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from afterimage import keys
from afterimage.components import run_loop
from afterimage.ledger import Ledger, move_args
from afterimage.manifest import archive_job_id
from afterimage.models import Task, TaskState
from afterimage.providers import NAMES

log = logging.getLogger("afterimage.recovery")
MAINTENANCE_INTERVAL = 10  # how often a worker looks for jobs whose heartbeat lapsed
WORKER_TTL = 25  # an idle worker wakes every WORKER_TTL - 15 s, and so can do maintenance
PROMOTE_EVERY = 1.0
RESCUE_EVERY = 15.0
RESCUE_AFTER = 60.0  # a task queued this long is checked for a job that will finish it
RESCUE_BATCH = 100
WAITING = {JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def promote_due(queues: Sequence[Queue], now: float) -> int:
    """Move retries whose time has come from each queue's scheduled registry to the queue."""
    moved = 0
    for queue in queues:
        registry = ScheduledJobRegistry(queue=queue)  # type: ignore[no-untyped-call]
        for job_id in registry.get_jobs_to_schedule(int(now)):
            try:
                registry.requeue(job_id)  # removes it first: of two workers, one moves it
                moved += 1
            except NoSuchJobError:
                registry.remove(job_id)
            except InvalidJobOperation:
                pass
    return moved


class Rescuer:
    """Finds tasks stranded in `queued` (see the module docstring); one batch per call."""

    def __init__(self, client: redis.Redis, queues: Sequence[Queue]) -> None:
        self.redis = client
        self.ledger = Ledger(client)
        self.queues = {q.name: q for q in queues}
        self.offset = 0  # walks through a long backlog batch by batch

    def run_once(self, now: float) -> int:
        if not self.redis.set(keys.RESCUE_LOCK, "1", nx=True, px=int(RESCUE_EVERY * 900)):
            return 0
        found, rescued = 0, 0
        for provider in NAMES:
            ids: Any = self.redis.zrangebyscore(
                keys.state_index(TaskState.QUEUED.value, provider), "-inf", now - RESCUE_AFTER,
                start=self.offset, num=RESCUE_BATCH)
            found = max(found, len(ids))
            for raw in ids:
                try:
                    task = self.ledger.get(provider, raw.decode())
                except (KeyError, ValueError) as exc:  # a record this code did not write
                    log.error("rescue %s %r: unreadable task record (%s: %s); skipped",
                              provider, raw, type(exc).__name__, exc)
                    continue
                if task is not None and task.state is TaskState.QUEUED:
                    rescued += self._check(task)
        self.offset = self.offset + RESCUE_BATCH if found == RESCUE_BATCH else 0
        return rescued

    def _check(self, task: Task) -> int:
        job_id = archive_job_id(task.provider, task.task_id, task.generation)
        try:
            job = Job.fetch(job_id, connection=self.redis)
            status = job.get_status()
        except NoSuchJobError:
            job, status = None, None
        if status in WAITING or (status == JobStatus.QUEUED and self._in_queue(job)):
            return 0
        if job is not None and status == JobStatus.FAILED:
            result = job.latest_result()
            why = (result.exc_string or "").strip().splitlines()[-1:] if result else []
            message = f"the archive job failed: {why[0][:300] if why else 'no reason recorded'}"
            self.ledger.move(move_args(
                task.provider, task.task_id, TaskState.ARCHIVE_FAILED, allowed="queued",
                expect_gen=task.generation,
                fields={"err": json.dumps({"code": "archive_job_failed", "message": message})}))
            log.warning("rescue %s %s: %s; archive_failed (replayable)",
                        task.provider, task.task_id, message)
            return 1
        if job is not None:
            job.delete()
        ea = task.expires_at.timestamp() if task.expires_at else ""
        self.redis.xadd(keys.INBOX, {"p": task.provider, "id": task.task_id,
                                     "g": task.generation, "ea": ea})
        log.warning("rescue %s %s: its archive job was %s; dispatched again",
                    task.provider, task.task_id, status.value if status else "gone")
        return 1

    def _in_queue(self, job: Job | None) -> bool:
        if job is None or (queue := self.queues.get(job.origin)) is None:
            return False
        return self.redis.lpos(queue.key, job.id) is not None


def run_recovery(client: redis.Redis, queues: Sequence[Queue], stop: threading.Event) -> None:
    """Promote due retries every PROMOTE_EVERY s and rescue stranded tasks every RESCUE_EVERY s,
    surviving any error (afterimage.components)."""
    rescuer = Rescuer(client, queues)
    next_rescue = time.monotonic() + RESCUE_EVERY

    def step() -> float:
        nonlocal next_rescue
        promote_due(queues, time.time())
        if time.monotonic() >= next_rescue:
            next_rescue = time.monotonic() + RESCUE_EVERY
            rescuer.run_once(time.time())
        return PROMOTE_EVERY

    run_loop("recovery", client, step, stop)
