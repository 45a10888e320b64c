"""Task operations for clients and operators — replay one, replay many — in one place, for the
/v1 API, the /ops page and the CLI alike.

Every operation checks its input here (provider, task id, state, limit, time) and raises
`InvalidRequestError`, `TaskNotFoundError`, `NotReplayableError` or `UnknownProviderError`;
the receiver turns them into HTTP answers (receiver/errors.py), the CLI into one line on
stderr. They work on the ledger directly, so the CLI needs Redis, not a running receiver.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis

from afterimage import keys
from afterimage.errors import (
    InvalidRequestError,
    LedgerUnavailableError,
    NotReplayableError,
    TaskNotFoundError,
)
from afterimage.ledger import AsyncLedger, index_key, replay_args
from afterimage.models import Task, TaskState, parse_moment, task_id_problem
from afterimage.providers import NAMES, adapter

REPLAYABLE_STATES = (TaskState.ARCHIVE_FAILED.value, TaskState.EXPIRED.value)
REPLAY_LIMIT = 1000  # tasks one bulk replay queues unless told otherwise
MAX_REPLAY_LIMIT = 100_000

# What a replay of one task did: 'queued' and 'polling' did something, the rest nothing.
REPLAY_MESSAGES = {
    "queued": "replay queued",
    "polling": "no result yet; the poller asks the provider again now",
    "archived": "already archived; nothing to replay",
    "already_queued": "already queued; its archive job is waiting or running",
}


@dataclass(frozen=True)
class ReplayedOne:
    task: Task
    outcome: str  # a key of REPLAY_MESSAGES

    @property
    def acted(self) -> bool:
        return self.outcome in ("queued", "polling")

    @property
    def message(self) -> str:
        return REPLAY_MESSAGES[self.outcome]


def task_ref(provider: str, task_id: str) -> tuple[str, str]:
    """The provider's canonical name and a task id that can name a task, or the error."""
    name = adapter(provider).name
    if (problem := task_id_problem(task_id)) is not None:
        raise InvalidRequestError(f"task_id: {problem}")
    return name, task_id


def replay_limit(limit: Any) -> int:
    """A bulk replay's limit: a whole number from 1 to MAX_REPLAY_LIMIT (None: REPLAY_LIMIT)."""
    if limit is None:
        return REPLAY_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int | str):
        raise InvalidRequestError(f"limit must be a whole number from 1 to {MAX_REPLAY_LIMIT}")
    try:
        value = int(limit)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_REPLAY_LIMIT:
        raise InvalidRequestError(f"limit must be a whole number from 1 to {MAX_REPLAY_LIMIT}")
    return value


def moment(since: float | str | None) -> float | None:
    """`since` as unix seconds, from unix seconds or an RFC 3339 time with its offset."""
    if since is None:
        return None
    try:
        return parse_moment(str(since))
    except ValueError as exc:
        raise InvalidRequestError(f"since: {exc}") from None


async def replay_one(ledger: AsyncLedger, provider: str, task_id: str) -> ReplayedOne:
    """Replay one task: archive_failed and expired are queued again, a pending task is polled
    now, an archived or queued one is left as it is. A task whose generation failed cannot be
    replayed (NotReplayableError)."""
    provider, task_id = task_ref(provider, task_id)
    task = await ledger.get(provider, task_id)
    if task is None:
        raise TaskNotFoundError(f"no task {provider} {task_id}")
    if task.state is TaskState.ARCHIVED:
        return ReplayedOne(task, "archived")
    if task.state is TaskState.QUEUED:
        return ReplayedOne(task, "already_queued")
    if task.state is TaskState.GENERATION_FAILED:
        raise NotReplayableError(f"{provider} {task_id}: the provider says generation failed")
    if task.state is TaskState.PENDING:
        async with _redis_errors():
            await ledger.redis.zadd(keys.due(provider), {task_id: time.time()}, xx=True)
        return ReplayedOne(task, "polling")
    move = await ledger.move(replay_args(provider, task_id))
    if move.ok:
        return ReplayedOne(task, "queued")
    return ReplayedOne(task, "archived" if move.previous == "archived" else "already_queued")


async def replay_many(
    ledger: AsyncLedger, state: str, provider: str | None = None,
    since: float | str | None = None, limit: Any = None,
) -> list[tuple[str, str]]:
    """Queue again up to `limit` tasks in `state` (archive_failed or expired), of one provider
    or all, that entered it at or after `since`; the (provider, task id) pairs queued."""
    if state not in REPLAYABLE_STATES:
        raise InvalidRequestError(f"state must be one of {', '.join(REPLAYABLE_STATES)}")
    providers = [adapter(provider).name] if provider else list(NAMES)
    low = moment(since)
    most = replay_limit(limit)
    queued: list[tuple[str, str]] = []
    for p in providers:
        async with _redis_errors():
            found: Any = await ledger.redis.zrangebyscore(
                index_key(state, p), "-inf" if low is None else low, "+inf",
                start=0, num=most - len(queued))
        for raw in found:
            task_id = raw.decode()
            if (await ledger.move(replay_args(p, task_id))).ok:
                queued.append((p, task_id))
        if len(queued) >= most:
            break
    return queued


@asynccontextmanager
async def _redis_errors() -> AsyncIterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise LedgerUnavailableError(f"Redis unavailable: {exc}") from exc
