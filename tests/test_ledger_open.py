"""The transition script keeps `ai:opened` (tasks not yet archived, counted per 10 s of creation
time) exact through every kind of move, and a new task's record stays small."""

from __future__ import annotations

import redis

from afterimage import keys
from afterimage.ledger import Ledger, move_args, replay_args
from afterimage.models import TaskState

T0 = 1_763_742_003.75  # slot 1763742000
T1 = T0 + 30  # slot 1763742030


def open_counts(db: redis.Redis) -> dict[int, int]:
    raw: dict[bytes, bytes] = db.hgetall(keys.OPEN)  # type: ignore[assignment]
    return {int(k): int(v) for k, v in raw.items()}


def move(ledger: Ledger, task_id: str, to: TaskState, allowed: str, now: float) -> bool:
    due = now + 60 if to is TaskState.PENDING else None
    return ledger.move(move_args("evolink", task_id, to, allowed=allowed, now=now,
                                 due_at=due)).ok


def test_open_counts_follow_tasks_in_and_out(redis_url: str) -> None:
    db = redis.Redis.from_url(redis_url)
    ledger = Ledger(db)
    assert move(ledger, "a", TaskState.PENDING, "none", T0)
    assert move(ledger, "b", TaskState.PENDING, "none", T0 + 1)
    assert move(ledger, "c", TaskState.QUEUED, "none", T1)
    assert open_counts(db) == {1763742000: 2, 1763742030: 1}

    assert not move(ledger, "a", TaskState.PENDING, "none", T1)  # a skipped move counts nothing
    assert move(ledger, "a", TaskState.QUEUED, "pending", T1 + 5)  # open to open: unchanged
    assert move(ledger, "a", TaskState.ARCHIVE_FAILED, "queued", T1 + 6)
    assert open_counts(db) == {1763742000: 2, 1763742030: 1}

    assert move(ledger, "a", TaskState.QUEUED, "archive_failed", T1 + 7)
    assert move(ledger, "a", TaskState.ARCHIVED, "queued", T1 + 8)
    assert move(ledger, "c", TaskState.EXPIRED, "queued", T1 + 9)
    assert open_counts(db) == {1763742000: 1}  # an emptied slot is removed

    assert move(ledger, "d", TaskState.GENERATION_FAILED, "none", T1)  # never open
    assert move(ledger, "b", TaskState.GENERATION_FAILED, "pending", T1 + 10)
    assert open_counts(db) == {}


def test_a_replayed_terminal_task_is_counted_again(redis_url: str) -> None:
    db = redis.Redis.from_url(redis_url)
    ledger = Ledger(db)
    assert move(ledger, "e", TaskState.QUEUED, "none", T0)
    assert move(ledger, "e", TaskState.EXPIRED, "queued", T1)
    assert open_counts(db) == {}
    assert ledger.move(replay_args("evolink", "e", now=T1 + 60)).ok  # expired is replayable
    assert open_counts(db) == {1763742000: 1}  # counted again, by its creation time
    assert move(ledger, "e", TaskState.ARCHIVED, "queued", T1 + 61)
    assert open_counts(db) == {}


def test_a_new_task_keeps_its_creation_second_and_no_update_time(redis_url: str) -> None:
    db = redis.Redis.from_url(redis_url)
    ledger = Ledger(db)
    assert move(ledger, "f", TaskState.PENDING, "none", T0)
    assert db.hgetall(keys.task("evolink", "f")) == {b"st": b"pending", b"c": b"1763742003"}
    task = ledger.get("evolink", "f")
    assert task is not None
    assert task.created_at.timestamp() == task.updated_at.timestamp() == 1763742003
    assert move(ledger, "f", TaskState.QUEUED, "pending", T1)
    task = ledger.get("evolink", "f")
    assert task is not None
    assert task.updated_at.timestamp() == T1
