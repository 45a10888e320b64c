"""Long-running loops that never die, each with a heartbeat in Redis.

Every background loop of afterimage (the dispatcher, recovery, the poller, the deadline sweep,
event delivery, the metrics flush) is a *step* run over and over by `run_loop` (a thread) or
`run_async` (an asyncio task). Whatever a step raises — Redis gone or slow, a stream or
consumer group that Redis lost, bad data, a bug — is logged and followed by a backoff that
doubles up to BACKOFF_CAP seconds, and the loop goes on. After each step that ends normally
the loop writes its heartbeat: `ai:heartbeat` maps the component's name to
"<unix time> <host>-<pid>" of the newest beat (at most one write per BEAT_EVERY seconds per
process), which `/metrics` exports as `afterimage_component_heartbeat_age_seconds` and `/ops`
shows. A loop that fails, hangs or is not running at all stops beating, so its age grows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis
import redis.asyncio as aredis

from afterimage import keys
from afterimage.errors import LedgerUnavailableError

log = logging.getLogger("afterimage.components")
# The names are part of the metric's contract (alert rules use them).
COMPONENTS = ("dispatcher", "recovery", "poller", "deadlines", "retention", "events", "metrics")
BEAT_EVERY = 1.0
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
# Errors that only say Redis cannot be reached now: logged without a traceback.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, LedgerUnavailableError)
Step = Callable[[], float]  # one round of work; returns how long to wait before the next


class Backoff:
    """Waits that double after each failure in a row, up to `cap`, with 10 % jitter."""

    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP) -> None:
        self.first, self.cap = first, cap
        self.failures = 0

    def next(self) -> float:
        delay: float = min(self.cap, self.first * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return delay * random.uniform(0.9, 1.0)

    def reset(self) -> None:
        self.failures = 0


def _who() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class _Beats:
    """When the last beat was written, so that a busy loop writes once per BEAT_EVERY."""

    def __init__(self, component: str) -> None:
        assert component in COMPONENTS, component
        self.component = component
        self.next_at = 0.0

    def due(self) -> dict[str, str] | None:
        if time.monotonic() < self.next_at:
            return None
        self.next_at = time.monotonic() + BEAT_EVERY
        return {self.component: f"{time.time():.3f} {_who()}"}


def failed(component: str, exc: BaseException, backoff: Backoff) -> float:
    """Log a step's error (no traceback when Redis is just unreachable); the wait before the
    next try."""
    delay = backoff.next()
    what = f"{type(exc).__name__}: {str(exc)[:300]}"
    where = {"event": "loop_error", "outcome": component}
    if isinstance(exc, UNREACHABLE):
        log.warning("%s: Redis unavailable (%s); retrying in %.1fs", component, what, delay,
                    extra=where)
    else:
        log.error("%s: unexpected error (%s); going on in %.1fs", component, what, delay,
                  exc_info=exc, extra=where)
    return delay


def run_loop(component: str, client: redis.Redis, step: Step, stop: threading.Event) -> None:
    """Run `step` until `stop` is set, surviving any error it raises."""
    beats, backoff = _Beats(component), Backoff()
    while not stop.is_set():
        try:
            pause = step()
            if (beat := beats.due()) is not None:
                client.hset(keys.HEARTBEATS, mapping=beat)  # type: ignore[arg-type]
        except Exception as exc:
            beats.next_at = 0.0  # beat as soon as a step succeeds again
            stop.wait(failed(component, exc, backoff))
            continue
        backoff.reset()
        if pause > 0:
            stop.wait(pause)


def start(component: str, client: redis.Redis, step: Step,
          stop: threading.Event) -> threading.Thread:
    """`run_loop` in a daemon thread named after the component."""
    thread = threading.Thread(target=run_loop, args=(component, client, step, stop),
                              daemon=True, name=component)
    thread.start()
    return thread


async def run_async(component: str, client: aredis.Redis,
                    step: Callable[[], Awaitable[float]]) -> None:
    """`run_loop` for an asyncio step; runs until cancelled."""
    beats, backoff = _Beats(component), Backoff()
    while True:
        try:
            pause = await step()
            if (beat := beats.due()) is not None:
                await client.hset(keys.HEARTBEATS, mapping=beat)  # type: ignore[arg-type]
        except Exception as exc:
            beats.next_at = 0.0
            await asyncio.sleep(failed(component, exc, backoff))
            continue
        backoff.reset()
        await asyncio.sleep(pause)


def heartbeats(raw: Mapping[Any, Any], now: float) -> dict[str, tuple[float, str]]:
    """component -> (age in seconds of its newest beat, the process that wrote it), from the
    `ai:heartbeat` hash (unknown or unreadable fields are skipped)."""
    out: dict[str, tuple[float, str]] = {}
    for name, value in raw.items():
        name = name.decode() if isinstance(name, bytes) else str(name)
        text = value.decode() if isinstance(value, bytes) else str(value)
        at, _, who = text.partition(" ")
        try:
            out[name] = (max(0.0, now - float(at)), who)
        except ValueError:
            continue
    return {c: out[c] for c in COMPONENTS if c in out}
