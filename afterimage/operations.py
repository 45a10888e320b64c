"""Task operations for clients and operators — track, submit, find, replay one, replay many — in one
place, for the /v1 API, the /ops page and the CLI alike.

Every operation checks its input here (provider, task id, state, limit, time) and raises
`InvalidRequestError`, `TaskNotFoundError`, `NotReplayableError` or `UnknownProviderError`;
the receiver turns them into HTTP answers (receiver/errors.py), the CLI into one line on
stderr. They work on the ledger directly, so the CLI needs Redis, not a running receiver.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from afterimage import keys, learning, provider_api
from afterimage.errors import (
    AdapterError,
    ConfigError,
    InvalidRequestError,
    LedgerUnavailableError,
    NotReplayableError,
    PermanentProviderError,
    StorageError,
    TaskNotFoundError,
)
from afterimage.ledger import AsyncLedger, index_key, move_args, replay_args
from afterimage.models import Task, TaskState, parse_moment, task_id_problem
from afterimage.providers import NAMES, adapter
from afterimage.retention import ManifestStore, archived_task, restore_args
from afterimage.schedule import first_poll, learns
from afterimage.settings import Settings
from afterimage.tokens import callback_url

log = logging.getLogger("afterimage.operations")
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
class Tracked:
    task: Task
    created: bool  # False: the task was known already, and is left as it was


@dataclass(frozen=True)
class Submitted:
    task: Task
    provider_response: Any  # the provider's create reply, as it sent it


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


def check_ref(settings: Settings, provider: str, model: Any, status_url: Any) -> None:
    """Raise InvalidRequestError (naming `model` or `status_url`) when a task could not be
    polled with them: fal needs its app id; a polling URL must be on the provider's own API
    (its scheme and host, or a host under the host's parent domain), since the API key is sent
    there."""
    a = adapter(provider)
    for name, value in (("model", model), ("status_url", status_url)):
        if value is not None and not isinstance(value, str):
            raise InvalidRequestError(f"{name} must be a string")
    base = settings.base_urls.get(a.name) or a.default_base_url
    if (problem := a.model_problem(model)) is not None:
        raise InvalidRequestError(f"model: {problem}")
    if (problem := a.status_url_problem(base, status_url)) is not None:
        raise InvalidRequestError(f"status_url: {problem}")


async def track(
    ledger: AsyncLedger, settings: Settings, provider: str, task_id: str,
    metadata: Mapping[str, Any] | None = None, model: str | None = None,
    status_url: str | None = None, *, store: ManifestStore | None = None,
) -> Tracked:
    """Start tracking a task submitted elsewhere: pending, its first poll due, with the model
    and polling URL its status query needs. A known task is left as it is. With `store`, a
    task that retention removed from Redis and whose manifest is in the bucket is recorded
    `archived` again from it at once (nothing fetched or written; without `store` its archive
    job does the same once the poller has its result)."""
    provider, task_id = task_ref(provider, task_id)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidRequestError("metadata must be a JSON object")
    check_ref(settings, provider, model, status_url)
    if store is not None and await ledger.get(provider, task_id) is None:
        try:
            found = await asyncio.to_thread(archived_task, store, provider, task_id)
        except StorageError as exc:  # tracked all the same: its archive job looks again
            log.warning("track %s %s: the bucket could not be asked for a manifest (%s)",
                        provider, task_id, exc,
                        extra={"event": "manifest_unknown", "provider": provider,
                               "task_id": task_id})
            found = None
        if found is not None:
            await ledger.move(restore_args(found[0], "none"))
            return Tracked(await _get(ledger, provider, task_id), False)
    created = await _start(ledger, settings, provider, task_id, metadata, model, status_url)
    return Tracked(await _get(ledger, provider, task_id), created)


async def submit(
    ledger: AsyncLedger, settings: Settings, client: httpx.Client, provider: str, body: Any,
    model: str | None = None,
) -> Submitted:
    """Send the provider's own create request `body` with our callback URL (where it calls
    back), the configured API key and `model` where the create URL names it (fal, bfl), then
    track the task it made. A provider that refuses or cannot be read raises a
    ProviderApiError (502; its 400/422 refuse the caller's body)."""
    name = adapter(provider).name
    check_ref(settings, name, model, None)
    if not isinstance(body, Mapping):
        raise InvalidRequestError("the body must be the provider's create request, a JSON object")
    if not settings.secrets:
        raise ConfigError("AFTERIMAGE_SECRET is not set (and no `afterimage up` data dir has one)")
    url = callback_url(settings.public_url, settings.secrets[0], name)
    try:
        created, reply = await asyncio.to_thread(
            provider_api.create, settings, client, name, body, url, model)
    except AdapterError as exc:  # the provider's reply, not the caller's request
        raise PermanentProviderError(name, f"its create reply cannot be read: {exc}") from exc
    task_id = created.task_id
    if (problem := task_id_problem(task_id)) is not None:
        raise PermanentProviderError(name, f"it named a task id that cannot be kept: {problem}")
    if model is None and isinstance(body.get("model"), str):
        model = body["model"]  # the model a task runs on: learned poll times are per model
    await _start(ledger, settings, name, task_id, None, model, created.status_url)
    return Submitted(await _get(ledger, name, task_id), reply)


async def _start(ledger: AsyncLedger, settings: Settings, provider: str, task_id: str,
                 metadata: Mapping[str, Any] | None, model: str | None = None,
                 status_url: str | None = None) -> bool:
    """The one transition that starts tracking a task; False when it was known. Its first
    poll follows what has been learned about the provider (and model) so far."""
    learned = None
    if learns(provider):
        async with _redis_errors():
            learned = await learning.learned_async(ledger.redis, provider, model)
    now = time.time()
    fields: dict[str, str] = {}
    if metadata:
        fields["md"] = json.dumps(dict(metadata))
    if model is not None:
        fields["mdl"] = model
    if status_url is not None:
        fields["su"] = status_url
    due = now + first_poll(settings, provider, learned)
    move = await ledger.move(move_args(provider, task_id, TaskState.PENDING, allowed="none",
                                       now=now, due_at=due, fields=fields or None))
    return move.ok


async def find(ledger: AsyncLedger, store: ManifestStore | None, provider: str,
               task_id: str) -> Task:
    """One task as the ledger holds it or, once retention removed it from Redis, as its
    manifest in the bucket tells it (with `store`); TaskNotFoundError when neither knows it."""
    provider, task_id = task_ref(provider, task_id)
    task = await ledger.get(provider, task_id)
    if task is None and store is not None:
        found = await asyncio.to_thread(archived_task, store, provider, task_id)
        task = found[0] if found else None
    if task is None:
        raise TaskNotFoundError(f"no task {provider} {task_id}")
    return task


async def _get(ledger: AsyncLedger, provider: str, task_id: str) -> Task:
    task = await ledger.get(provider, task_id)
    if task is None:  # only if it left Redis between the two calls
        raise TaskNotFoundError(f"no task {provider} {task_id}")
    return task


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
