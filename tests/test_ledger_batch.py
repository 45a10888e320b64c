"""AsyncLedger sends the transitions of one event-loop pass in one call: each caller still
gets its own reply, a failing transition fails only its caller, and lost scripts reload."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from afterimage.ledger import AsyncLedger, Move, move_args
from afterimage.models import TaskState


def pending(task_id: str) -> list[str]:
    return move_args("evolink", task_id, TaskState.PENDING, allowed="none", due_at=1.0)


async def moves(url: str, batch: list[list[str]], before: Any = None) -> list[Any]:
    client = aredis.Redis.from_url(url)
    try:
        if before is not None:
            await before(client)
        ledger = AsyncLedger(client)
        return await asyncio.gather(*(ledger.move(a) for a in batch), return_exceptions=True)
    finally:
        await client.aclose()


def test_concurrent_moves_each_get_their_own_reply(redis_url: str) -> None:
    ids = [f"t-{i}" for i in range(300)]  # more than one call's worth
    got = asyncio.run(moves(redis_url, [pending(i) for i in ids] + [pending("t-7")]))
    assert got[:300] == [Move(True, "none", 0)] * 300
    assert got[300] == Move(False, "pending", 0)  # the same task again: a skip
    db = redis.Redis.from_url(redis_url)
    assert db.zcard("ai:due:evolink") == 300


def test_a_failing_transition_fails_only_its_caller(redis_url: str) -> None:
    db = redis.Redis.from_url(redis_url)
    db.hset("ai:t:evolink:broken", mapping={"st": "pending", "g": "not a number"})
    bumped = move_args("evolink", "broken", TaskState.QUEUED, allowed="pending",
                       bump_gen=True)
    got = asyncio.run(moves(redis_url, [pending("a"), bumped, pending("b")]))
    assert got[0] == got[2] == Move(True, "none", 0)
    assert isinstance(got[1], redis.ResponseError)


def test_scripts_lost_by_redis_are_loaded_again(redis_url: str) -> None:
    async def flush(client: aredis.Redis) -> None:
        await client.script_flush()

    assert asyncio.run(moves(redis_url, [pending("x")], before=flush)) == [
        Move(True, "none", 0)]


@pytest.mark.parametrize("count", [1, 2])
def test_replies_match_callers_in_order(redis_url: str, count: int) -> None:
    batch = [move_args("evolink", f"o-{i}", TaskState.QUEUED, allowed="none", bump_gen=True)
             for i in range(count)]
    assert asyncio.run(moves(redis_url, batch)) == [Move(True, "none", 1)] * count
