"""The task ledger in Redis: records, state moves, indexes. Key names live in afterimage.keys.

Every state change goes through one Lua script (lua/transition.lua), so a task record, its
index entries and its dispatch entry always change together or not at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
import redis.asyncio as aredis
from redis.exceptions import NoScriptError

from afterimage import keys
from afterimage.errors import LedgerUnavailableError, ReplicasBehindError
from afterimage.models import Outcome, ProviderResult, Task, TaskState, from_epoch

TRANSITION = resources.files("afterimage").joinpath("lua/transition.lua").read_text()
TRANSITIONS = ("local function transition(ARGV)\n" + TRANSITION + "\nend\n"
               + resources.files("afterimage").joinpath("lua/transitions.lua").read_text())
BATCH_MAX = 128  # transitions per call: each holds Redis for some 50 us
REPLICA_WAIT_MS = 1000  # how long an acknowledgement waits for AFTERIMAGE_REDIS_MIN_REPLICAS
OPEN = "none,pending"  # states a fresh result may move a task out of
# Hash fields: st state · c created · u updated · ca completed · ea expires · n attempts ·
# g generation · md metadata · urls · img images · err error · mdl model · dup duplicates ·
# cf result came from the provider's status API · su the provider's polling URL
Fields = Mapping[str, str | float | int | None]


@dataclass(frozen=True)
class Move:
    """The result of a transition: did it happen, from which state, at which generation."""

    ok: bool
    previous: str
    generation: int


def move_args(
    provider: str,
    task_id: str,
    to: TaskState,
    *,
    allowed: str,
    now: float | None = None,
    expect_gen: int | None = None,
    bump_gen: bool = False,
    due_at: float | None = None,
    dispatch: bool = False,
    count_dup: bool = False,
    event: str | None = None,
    fields: Fields | None = None,
) -> list[str]:
    """The ARGV of one transition. `event`: a completion event's body, recorded in ai:events
    by the same script call when the transition happens (worker.notify delivers it)."""
    now = time.time() if now is None else now
    args = [
        keys.PREFIX, provider, task_id, repr(now), to.value, allowed,
        "" if expect_gen is None else str(expect_gen), "1" if bump_gen else "0",
        "" if due_at is None else repr(due_at), "1" if dispatch else "0",
        "1" if count_dup else "0", event or "",
    ]
    for name, value in (fields or {}).items():
        args += [name, "" if value is None else str(value)]
    return args


def result_args(
    result: ProviderResult, *, confirm: bool, now: float, first_poll: float,
    allowed: str = OPEN, confirmed: bool = False,
) -> list[str]:
    """The transition a provider's word on a task causes (callback or poll).

    `confirm`: the archive job must ask the provider before trusting this result;
    `confirmed`: the result came from the provider's own status API.
    """
    fields: dict[str, str | float | None] = {"cf": "1" if confirmed else None}
    if result.model:
        fields["mdl"] = result.model
    if result.completed_at:
        fields["ca"] = result.completed_at.timestamp()
    if result.expires_at:
        fields["ea"] = result.expires_at.timestamp()
    if result.outcome is Outcome.PENDING:
        return move_args(result.provider, result.task_id, TaskState.PENDING, allowed=allowed,
                         now=now, due_at=now + first_poll, count_dup=True, fields=fields)
    if result.outcome is Outcome.FAILED:
        fields["err"] = json.dumps({"code": result.error_code or "generation_failed",
                                    "message": result.error_message or "generation failed"})
        if not confirm:
            return move_args(result.provider, result.task_id, TaskState.GENERATION_FAILED,
                             allowed=allowed, now=now, count_dup=True, fields=fields)
    else:
        fields["urls"] = json.dumps(result.urls)
        fields["err"] = None
    return move_args(result.provider, result.task_id, TaskState.QUEUED, allowed=allowed,
                     now=now, bump_gen=True, dispatch=True, count_dup=True, fields=fields)


def task_from_hash(provider: str, task_id: str, raw: Mapping[bytes, bytes]) -> Task | None:
    """A Task from its Redis hash, or None when there is none."""
    if not raw:
        return None
    h = {k.decode(): v.decode() for k, v in raw.items()}

    def num(name: str) -> float | None:
        return float(h[name]) if name in h else None

    return Task(
        provider=provider,
        task_id=task_id,
        state=TaskState(h["st"]),
        created_at=from_epoch(num("c")) or from_epoch(0.0),  # type: ignore[arg-type]
        updated_at=from_epoch(num("u") or num("c")) or from_epoch(0.0),  # type: ignore[arg-type]
        completed_at=from_epoch(num("ca")),
        expires_at=from_epoch(num("ea")),
        images=tuple(json.loads(h.get("img", "[]"))),
        error=json.loads(h["err"]) if "err" in h else None,
        attempts=int(h.get("n", "0")),
        metadata=json.loads(h.get("md", "{}")),
        urls=tuple(json.loads(h.get("urls", "[]"))),
        model=h.get("mdl"),
        generation=int(h.get("g", "0")),
        confirmed=h.get("cf") == "1",
        status_url=h.get("su"),
    )


def _resp(*parts: Sequence[str]) -> bytes:
    """One Redis command in RESP, from string arguments."""
    args = [a.encode() for part in parts for a in part]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _move(reply: Sequence[Any]) -> Move:
    status, previous, gen = reply
    return Move(_text(status) == "ok", _text(previous), int(gen))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Ledger:
    """Synchronous access, for workers, the poller and the CLI."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._transition = client.register_script(TRANSITION)

    def move(self, args: list[str]) -> Move:
        try:
            return _move(self._transition(args=args))
        except redis.ConnectionError as exc:
            raise LedgerUnavailableError(f"Redis unavailable: {exc}") from exc

    def get(self, provider: str, task_id: str) -> Task | None:
        try:
            raw = self.redis.hgetall(keys.task(provider, task_id))
        except redis.ConnectionError as exc:
            raise LedgerUnavailableError(f"Redis unavailable: {exc}") from exc
        return task_from_hash(provider, task_id, raw)  # type: ignore[arg-type]

    def count_attempt(self, provider: str, task_id: str) -> int:
        return int(self.redis.hincrby(keys.task(provider, task_id), "n", 1))


class AsyncLedger:
    """Asynchronous access, for the receiver.

    Transitions go to Redis together, in one call of lua/transitions.lua (transition.lua run
    once per transition) on one connection: those asked for in one pass of the event loop,
    and while a call is out, all that come meanwhile. Under load one write, one read and one
    script call serve many requests (and, with appendfsync always, one fsync), where a round
    trip each cost more CPU than the rest of a callback; when idle, a lone transition goes at
    once. Each caller still gets its own reply, once Redis has given it.

    With `min_replicas`, each call ends with `WAIT min_replicas REPLICA_WAIT_MS` on the same
    connection: a caller gets its reply only once that many replicas hold the write, else
    ReplicasBehindError (a 503: nothing is acknowledged, the provider sends it again).
    """

    def __init__(self, client: aredis.Redis, min_replicas: int = 0) -> None:
        self.redis = client
        self.min_replicas = min_replicas
        self._sha = hashlib.sha1(TRANSITIONS.encode(), usedforsecurity=False).hexdigest()
        self._waiting: list[tuple[list[str], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def move(self, args: list[str]) -> Move:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((args, reply))
        if self._sender is None:  # it starts after every handler this pass has started
            self._sender = loop.create_task(self._send())
        return _move(await reply)

    async def _send(self) -> None:
        """Send what is waiting; while a call is out, what comes meanwhile waits for the next."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._run(batch)
        finally:
            self._sender = None

    async def _run(self, batch: list[tuple[list[str], asyncio.Future[Any]]]) -> None:
        replies: list[Any]
        try:
            replies = await self._call([args for args, _ in batch])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            replies = [LedgerUnavailableError(f"Redis unavailable: {exc}") for _ in batch]
        except Exception as exc:
            replies = [exc] * len(batch)
        for (_, reply), value in zip(batch, replies, strict=True):
            if reply.done():  # the caller was cancelled
                continue
            if isinstance(value, BaseException):
                reply.set_exception(value)
            else:
                reply.set_result(value)

    async def _call(self, batch: list[list[str]]) -> list[Any]:
        """One reply per transition: {status, previous, generation}, or a ResponseError."""
        payload = b"".join(
            _resp(("EVALSHA", self._sha, "0"),
                  [a for args in batch[i:i + BATCH_MAX] for a in (str(len(args)), *args)])
            for i in range(0, len(batch), BATCH_MAX))
        calls = -(-len(batch) // BATCH_MAX)
        try:
            replies = await self._exchange(payload, calls)
        except redis.ConnectionError:  # a stale pooled connection: one fresh try, as redis-py's
            replies = await self._exchange(payload, calls)
        if any(isinstance(r, NoScriptError) for r in replies):  # Redis lost its scripts
            await self.redis.script_load(TRANSITIONS)
            replies = await self._exchange(payload, calls)
        out: list[Any] = []
        for reply in replies:
            if isinstance(reply, Exception):
                out += [reply] * min(BATCH_MAX, len(batch) - len(out))
            else:
                out += [redis.ResponseError(_text(r[1])) if _text(r[0]) == "error" else r
                        for r in reply]
        return out

    async def _exchange(self, payload: bytes, count: int) -> list[Any]:
        """Write `payload` (packed here: redis-py's pure-Python packing of a transition's two
        dozen arguments cost more than its round trip) and read `count` replies."""
        pool = self.redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        wait = self.min_replicas
        if wait:
            payload += _resp(("WAIT", str(wait), str(REPLICA_WAIT_MS)))
        try:
            await conn.send_packed_command(payload, check_health=False)
            replies: list[Any] = []
            for _ in range(count):
                try:
                    replies.append(await conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
            held = int(await conn.read_response()) if wait else 0
        except BaseException:
            await conn.disconnect(nowait=True)  # replies may be left unread
            raise
        finally:
            await pool.release(conn)
        if held < wait:
            raise ReplicasBehindError(f"only {held} of {wait} Redis replicas confirmed the write "
                                      f"within {REPLICA_WAIT_MS} ms")
        return replies

    async def get(self, provider: str, task_id: str) -> Task | None:
        try:
            raw: Any = await self.redis.hgetall(keys.task(provider, task_id))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise LedgerUnavailableError(f"Redis unavailable: {exc}") from exc
        return task_from_hash(provider, task_id, raw)


def index_key(state: str, provider: str) -> str:
    """Where tasks of `state` are listed (pending tasks live in the poll schedule)."""
    return keys.due(provider) if state == TaskState.PENDING else keys.state_index(state, provider)


async def list_tasks(
    ledger: AsyncLedger,
    states: Sequence[str],
    providers: Sequence[str],
    limit: int,
    offset: int = 0,
) -> list[Task]:
    """Tasks in `states` from `providers`, most recently changed (or soonest due) first."""
    pipe = ledger.redis.pipeline(transaction=False)
    pairs = [(s, p) for s in states for p in providers]
    for state, provider in pairs:
        pipe.zrevrange(index_key(state, provider), 0, offset + limit - 1, withscores=True)
    try:
        ranked = await pipe.execute()
        merged = sorted(
            ((score, p, m.decode()) for (_, p), rows in zip(pairs, ranked, strict=True)
             for m, score in rows),
            reverse=True,
        )[offset: offset + limit]
        pipe = ledger.redis.pipeline(transaction=False)
        for _, p, task_id in merged:
            pipe.hgetall(keys.task(p, task_id))
        raws: list[dict[bytes, bytes]] = await pipe.execute()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise LedgerUnavailableError(f"Redis unavailable: {exc}") from exc
    tasks = (task_from_hash(p, i, raw) for (_, p, i), raw in zip(merged, raws, strict=True))
    return [t for t in tasks if t is not None]


REPLAYABLE = "archive_failed,expired"


def replay_args(provider: str, task_id: str, now: float | None = None) -> list[str]:
    """Queue a failed or expired task's archive job again (a fresh generation)."""
    return move_args(provider, task_id, TaskState.QUEUED, allowed=REPLAYABLE, now=now,
                     bump_gen=True, dispatch=True, fields={"err": None})
