"""The recovery net on a real Redis with real RQ jobs: due retries, stranded queued tasks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from rq import Queue
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from afterimage import keys
from afterimage.ledger import Ledger, move_args
from afterimage.manifest import archive_job_id
from afterimage.models import TaskState
from worker.recovery import RESCUE_AFTER, Rescuer, promote_due
from worker.rq_worker import HEARTBEAT_EVERY, HEARTBEAT_TTL, ArchiveWorker
from worker.runner import QUEUES

LONG_AGO = time.time() - 2 * RESCUE_AFTER


@pytest.fixture()
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture()
def queues(db: redis.Redis) -> list[Queue]:
    return [Queue(name, connection=db) for name in QUEUES]


def queued_task(db: redis.Redis, task_id: str, at: float = LONG_AGO) -> str:
    """A task recorded as queued at `at` (generation 1), with no inbox entry: its job id."""
    Ledger(db).move(move_args("evolink", task_id, TaskState.QUEUED, allowed="none", now=at,
                              bump_gen=True, fields={"urls": json.dumps(["https://x/1.png"])}))
    return archive_job_id("evolink", task_id, 1)


def inbox(db: redis.Redis) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in db.xrange(keys.INBOX)]


def test_a_queued_task_without_a_job_is_dispatched_again(db: redis.Redis,
                                                         queues: list[Queue]) -> None:
    queued_task(db, "no-job")
    assert Rescuer(db, queues).run_once(time.time()) == 1
    assert inbox(db) == [{b"p": b"evolink", b"id": b"no-job", b"g": b"1", b"ea": b""}]


def test_a_job_popped_by_a_worker_that_died_is_dispatched_again(
    db: redis.Redis, queues: list[Queue]
) -> None:
    job_id = queued_task(db, "popped")
    queues[1].enqueue("builtins.len", "x", job_id=job_id)
    assert db.lpop(queues[1].key) == job_id.encode()  # a worker took it and died
    assert Rescuer(db, queues).run_once(time.time()) == 1
    assert [f[b"id"] for f in inbox(db)] == [b"popped"]
    assert not db.exists(f"rq:job:{job_id}")  # the dispatcher makes it afresh


def test_a_failed_job_leaves_its_task_archive_failed_and_replayable(
    db: redis.Redis, queues: list[Queue]
) -> None:
    job_id = queued_task(db, "failed")
    queues[1].enqueue("builtins.int", "not a number", job_id=job_id)
    ArchiveWorker(queues, connection=db, stop=threading.Event()).work(burst=True)
    assert queues[1].fetch_job(job_id).get_status() == JobStatus.FAILED
    assert Rescuer(db, queues).run_once(time.time()) == 1
    task = Ledger(db).get("evolink", "failed")
    assert task is not None
    assert task.state is TaskState.ARCHIVE_FAILED
    assert task.error is not None
    assert task.error["code"] == "archive_job_failed"
    assert "ValueError" in task.error["message"]
    assert inbox(db) == []


def test_waiting_running_and_young_tasks_are_left_alone(
    db: redis.Redis, queues: list[Queue]
) -> None:
    waiting = queued_task(db, "waiting")
    queues[1].enqueue("builtins.len", "x", job_id=waiting)
    running = queued_task(db, "running")
    queues[1].enqueue("builtins.len", "x", job_id=running)
    db.lrem(queues[1].key, 1, running)
    queues[1].fetch_job(running).set_status(JobStatus.STARTED)
    retrying = queued_task(db, "retrying")
    queues[1].enqueue_at(datetime.now(UTC) + timedelta(minutes=5), "builtins.len", "x",
                         job_id=retrying)
    queued_task(db, "young", at=time.time())
    assert Rescuer(db, queues).run_once(time.time()) == 0
    assert inbox(db) == []
    states = {t: Ledger(db).get("evolink", t).state for t in  # type: ignore[union-attr]
              ("waiting", "running", "retrying", "young")}
    assert set(states.values()) == {TaskState.QUEUED}


def test_one_worker_at_a_time_looks(db: redis.Redis, queues: list[Queue]) -> None:
    queued_task(db, "no-job")
    assert Rescuer(db, queues).run_once(time.time()) == 1
    assert Rescuer(db, queues).run_once(time.time()) == 0  # the first still holds the lock
    assert len(inbox(db)) == 1


def test_due_retries_are_moved_to_their_queue(db: redis.Redis, queues: list[Queue]) -> None:
    due = queues[1].enqueue_at(datetime.now(UTC) - timedelta(seconds=1), "builtins.len", "x")
    later = queues[1].enqueue_at(datetime.now(UTC) + timedelta(minutes=5), "builtins.len", "x")
    gone = queues[1].enqueue_at(datetime.now(UTC) - timedelta(seconds=1), "builtins.len", "x")
    db.delete(gone.key)
    assert promote_due(queues, time.time()) == 1
    assert queues[1].job_ids == [due.id]
    assert ScheduledJobRegistry(queue=queues[1]).get_job_ids() == [later.id]
    assert promote_due(queues, time.time()) == 0


def test_a_running_job_keeps_a_short_heartbeat(db: redis.Redis, queues: list[Queue]) -> None:
    """While a job runs, its entry in RQ's started registry lapses HEARTBEAT_TTL ahead (not
    the job timeout + 60 s of a plain SimpleWorker) and is pushed forward every few seconds:
    the RQ internals ArchiveWorker relies on behave as it expects on the RQ installed."""
    job = queues[1].enqueue("time.sleep", HEARTBEAT_EVERY + 3, job_timeout=600)
    registry = StartedJobRegistry(queue=queues[1])
    seen: list[tuple[float, float]] = []  # (when looked, when the entry would lapse)
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            seen.extend((time.time(), score) for _, score in
                        db.zrange(registry.key, 0, -1, withscores=True))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        ArchiveWorker(queues[1:2], connection=db, stop=threading.Event()).work(burst=True)
    finally:
        done.set()
        watcher.join()
    assert queues[1].fetch_job(job.id).get_status() == JobStatus.FINISHED
    assert seen, "the job was never seen running"
    assert all(lapse - at <= HEARTBEAT_TTL + 1 for at, lapse in seen)
    assert len({lapse for _, lapse in seen}) >= 2, "the heartbeat was never renewed"
