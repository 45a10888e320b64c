"""GET /metrics: Prometheus text for the whole deployment, read from Redis at scrape time.

Counters are the `ai:metrics` hash every process adds to (see afterimage.metrics); this
process writes its own pending counts first. Gauges are computed from the ledger's indexes in
one pipelined round trip: ZCARD of every state index, the lowest slot of `ai:opened`, the
earliest of `ai:deadline`, the inbox and queue lengths, Redis's memory use. If Redis cannot be
reached the answer is still 200, with `afterimage_redis_up 0`, so the outage itself is what
alerts; `afterimage_storage_up` is the object store's answer to the check /readyz makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from afterimage import keys
from afterimage.components import heartbeats, run_async
from afterimage.ledger import index_key
from afterimage.metrics import families, write
from afterimage.models import TaskState
from afterimage.settings import PROVIDERS
from receiver.runtime import Runtime, runtime

FLUSH_EVERY = 1.0
REDIS_ERRORS = (redis.RedisError, OSError)


class Snapshot(Collector):
    """A collector over families read just before the scrape."""

    def __init__(self, found: Sequence[Metric]) -> None:
        self.found = found

    def collect(self) -> Iterator[Metric]:
        yield from self.found


async def flush(rt: Runtime) -> None:
    """Write this process's gathered counts to Redis; if that fails they are kept for the
    next flush, and the error is raised."""
    counts = rt.tally.drain()
    if not counts:
        return
    try:
        pipe = rt.ledger.redis.pipeline(transaction=False)
        write(pipe, counts)
        await pipe.execute()
    except BaseException:
        rt.tally.restore(counts)
        raise


async def flush_forever(rt: Runtime) -> None:
    """Flush about once a second, as the `metrics` component (heartbeat, survives any error);
    cancelled by the lifespan at shutdown."""

    async def step() -> float:
        await flush(rt)
        return FLUSH_EVERY

    await asyncio.sleep(FLUSH_EVERY)
    await run_async("metrics", rt.ledger.redis, step)


async def metrics(request: Request) -> Response:
    rt = runtime(request)
    with contextlib.suppress(*REDIS_ERRORS):
        await flush(rt)
    try:
        found = await _read(rt)
        found.append(_gauge("afterimage_redis_up", "1 if Redis answered this scrape.", 1))
    except REDIS_ERRORS:
        found = [_gauge("afterimage_redis_up", "1 if Redis answered this scrape.", 0)]
    store = getattr(request.app.state, "store", None)
    if store is not None:
        found.append(_gauge("afterimage_storage_up",
                            "1 if the object store answered this scrape's check (as /readyz).",
                            await _answers(store.ping)))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(found))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def _answers(ping: Any) -> int:
    try:
        await run_in_threadpool(ping)
    except Exception:
        return 0
    return 1


def _oldest_age(slots: dict[bytes, bytes], now: float) -> float:
    """Age of the earliest 10 s creation slot that still holds an open task; 0 if none."""
    held = [int(slot) for slot, count in slots.items() if int(count) > 0]
    return max(0.0, now - min(held)) if held else 0.0


async def _read(rt: Runtime) -> list[Metric]:
    polled = [p for p in PROVIDERS if p in rt.settings.api_keys]
    pairs = [(s.value, p) for s in TaskState for p in PROVIDERS]
    pipe = rt.ledger.redis.pipeline(transaction=False)
    pipe.hgetall(keys.METRICS)
    pipe.hgetall(keys.OPEN)
    pipe.zrange(keys.DEADLINES, 0, 0, withscores=True)
    pipe.xlen(keys.INBOX)
    pipe.hgetall(keys.HEARTBEATS)
    pipe.xlen(keys.EVENTS)
    pipe.zcard(keys.EVENTS_LATER)
    for state, provider in pairs:
        pipe.zcard(index_key(state, provider))
    for queue in keys.QUEUES:
        pipe.llen(f"rq:queue:{queue}")
    for provider in polled:
        pipe.zrange(keys.due(provider), 0, 0, withscores=True)
    pipe.info("memory")
    replies: list[Any] = await pipe.execute()
    memory = replies.pop()
    now = time.time()
    counters, oldest, earliest, inbox, beats, events, later = replies[:7]
    rest = replies[7:]
    sizes, rest = rest[:len(pairs)], rest[len(pairs):]
    lengths, dues = rest[:len(keys.QUEUES)], rest[len(keys.QUEUES):]

    found = families(counters)
    tasks = GaugeMetricFamily("afterimage_tasks", "Tasks in each state, by provider.",
                              labels=("state", "provider"))
    for (state, provider), size in zip(pairs, sizes, strict=True):
        tasks.add_metric([state, provider], size)
    found.append(tasks)
    found.append(_gauge(
        "afterimage_oldest_unarchived_task_age_seconds",
        "Age of the oldest task not yet archived (pending, queued or archive_failed), to 10 s "
        "(rounded up); 0 if none.",
        _oldest_age(oldest, now)))
    if earliest:
        found.append(_gauge(
            "afterimage_earliest_link_deadline_seconds",
            "Seconds left before the earliest result-link expiry among tasks not yet archived "
            "(negative once passed); absent when no such task has a known expiry.",
            earliest[0][1] - now))
    found.append(_gauge("afterimage_inbox_entries",
                        "Recorded results whose archive job the dispatcher has not created yet.",
                        inbox))
    found.append(_gauge("afterimage_events_undelivered",
                        "Completion events recorded and not yet delivered (waiting, being "
                        "sent, or waiting for their next try).", events + later))
    queued = GaugeMetricFamily("afterimage_queue_jobs", "Jobs waiting in each RQ queue.",
                               labels=("queue",))
    for queue, length in zip(keys.QUEUES, lengths, strict=True):
        queued.add_metric([queue], length)
    found.append(queued)
    lag = GaugeMetricFamily(
        "afterimage_poll_lag_seconds",
        "How far the most overdue pending task is past its poll time, by provider (polled "
        "providers only).", labels=("provider",))
    for provider, due in zip(polled, dues, strict=True):
        lag.add_metric([provider], max(0.0, now - due[0][1]) if due else 0.0)
    found.append(lag)
    ages = GaugeMetricFamily(
        "afterimage_component_heartbeat_age_seconds",
        "Seconds since a background loop (dispatcher, recovery, poller, deadlines, events, "
        "metrics) of any process last completed a round; absent for a loop that never ran.",
        labels=("component",))
    for component, (age, _) in heartbeats(beats, now).items():
        ages.add_metric([component], age)
    found.append(ages)
    found.append(_gauge("afterimage_redis_memory_used_bytes",
                        "Memory Redis uses (INFO memory: used_memory).",
                        memory.get("used_memory", 0)))
    found.append(_gauge("afterimage_redis_memory_max_bytes",
                        "Redis's maxmemory limit; 0 if none is set.",
                        memory.get("maxmemory", 0)))
    return found


def _gauge(name: str, help: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help, value=value)
