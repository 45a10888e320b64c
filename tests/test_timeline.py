"""The transition script counts tasks ending archived, failed or expired per 10 minutes in
`ai:outcomes:{day}` (kept 25 h), and afterimage.timeline reads the last 24 hours of them and
the links dying in the coming hour, as /ops's chart shows them."""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aredis

from afterimage import keys, timeline
from afterimage.ledger import Ledger, move_args
from afterimage.models import TaskState

NOW = time.time()
SLOT_NOW = int(NOW // 600 * 600)


def move(ledger: Ledger, task_id: str, to: TaskState, allowed: str, now: float,
         expires: float | None = None) -> bool:
    due = now + 60 if to is TaskState.PENDING else None
    return ledger.move(move_args("kie", task_id, to, allowed=allowed, now=now, due_at=due,
                                 fields={"ea": expires} if expires else None)).ok


def read(redis_url: str) -> timeline.Timeline:
    async def go() -> timeline.Timeline:
        client = aredis.Redis.from_url(redis_url)
        try:
            return await timeline.read(client, NOW)
        finally:
            await client.aclose()
    return asyncio.run(go())


def test_outcomes_are_counted_per_10_minutes_where_the_state_changes(redis_url: str) -> None:
    db = redis.Redis.from_url(redis_url)
    ledger = Ledger(db)
    hours_ago = NOW - 5 * 3600
    for i in range(3):
        assert move(ledger, f"a{i}", TaskState.QUEUED, "none", hours_ago)
        assert move(ledger, f"a{i}", TaskState.ARCHIVED, "queued", hours_ago + 1)
    assert move(ledger, "f", TaskState.QUEUED, "none", NOW)
    assert move(ledger, "f", TaskState.ARCHIVE_FAILED, "queued", NOW)
    assert move(ledger, "f", TaskState.ARCHIVE_FAILED, "archive_failed", NOW)  # no new ending
    assert move(ledger, "g", TaskState.GENERATION_FAILED, "none", NOW)
    assert move(ledger, "e", TaskState.EXPIRED, "none", NOW)
    assert move(ledger, "old", TaskState.ARCHIVED, "none", NOW - 25 * 3600)  # past the chart
    assert move(ledger, "p", TaskState.PENDING, "none", NOW, expires=NOW + 15 * 60)
    assert move(ledger, "q", TaskState.PENDING, "none", NOW, expires=NOW + 2 * 3600)  # later

    day = keys.outcomes(int(NOW // 86400))
    assert 0 < int(db.ttl(day)) <= 25 * 3600  # type: ignore[arg-type]
    got = read(redis_url)
    assert got.start + (timeline.PAST - 1) * 600 == SLOT_NOW
    i_then = (int(hours_ago // 600 * 600) - got.start) // 600
    assert got.past["archived"][i_then] == 3 and sum(got.past["archived"]) == 3
    assert got.past["failed"][-1] == 2 and sum(got.past["failed"]) == 2
    assert got.past["expired"][-1] == 1 and sum(got.past["expired"]) == 1
    assert got.dying == [0, 1, 0, 0, 0, 0]  # p dies in 15 min; q later, the rest are closed
