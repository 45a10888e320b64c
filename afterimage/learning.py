"""The learning store: completion ages this deployment has seen, per provider and model, kept in
Redis as fixed-size histograms (afterimage.poll_plan) that every poller and receiver shares.

Reads are cached in the process for CACHE_SECONDS: a schedule follows what was learned within
seconds, without a Redis round trip for every task."""

from __future__ import annotations

import re
import threading
import time
from importlib import resources
from typing import Any, cast

import redis
import redis.asyncio

from afterimage import keys
from afterimage.poll_plan import DECAY_AT, MIN_SAMPLES, Sketch, bin_of

LEARN = resources.files("afterimage").joinpath("lua/learn.lua").read_text()
TTL = 30 * 86400  # a provider or model not seen for this long is forgotten
CACHE_SECONDS = 5.0
_MODEL = re.compile(r"[^A-Za-z0-9._/-]")

_cache: dict[tuple[int, str, str | None], tuple[float, Sketch | None]] = {}  # by client
_lock = threading.Lock()


def model_key(model: str | None) -> str | None:
    """A model name fit for a key (bounded length, plain characters), or None."""
    if not model:
        return None
    return _MODEL.sub("_", model)[:64]


def observe(client: redis.Redis, provider: str, model: str | None, age: float) -> None:
    """Record that a task of `provider` (and `model`) completed `age` seconds after tracking
    (in unscaled seconds: the caller divides by AFTERIMAGE_POLL_SCALE)."""
    names = [keys.learned(provider)]
    if (m := model_key(model)) is not None:
        names.append(keys.learned(provider, m))
    client.register_script(LEARN)(keys=names, args=[bin_of(age), DECAY_AT, TTL])


def completion_age(created: float, detected: float, completed: float | None,
                   gap: float, tolerance: float = 1.0) -> float:
    """The age to learn from a task tracked at `created` and seen complete at `detected`: the
    provider's own completion time where it gives one, else the previous query's age (`gap`
    before): the earliest the task can have completed. Learning the detection time instead
    would push the first query later with every round, so a completion time within
    `tolerance` of the detection is not believed (adapters fill a missing one with the time
    of the reply)."""
    if completed is not None and created <= completed < detected - tolerance:
        return completed - created
    return max(0.0, detected - created - gap)


def _pick(provider_fields: dict[Any, Any], model_fields: dict[Any, Any]) -> Sketch | None:
    """The model's own histogram when it has enough samples, else the provider's."""
    for fields in (model_fields, provider_fields):
        if fields:
            sketch = Sketch.from_fields(fields)
            if sketch.total >= MIN_SAMPLES:
                return sketch
    return None


def _cached(client: object, provider: str, model: str | None,
            now: float) -> tuple[bool, Sketch | None]:
    with _lock:
        hit = _cache.get((id(client), provider, model))
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return True, hit[1]
    return False, None


def _keep(client: object, provider: str, model: str | None, now: float,
          sketch: Sketch | None) -> Sketch | None:
    with _lock:
        if len(_cache) > 1000:
            _cache.clear()
        _cache[(id(client), provider, model)] = (now, sketch)
    return sketch


def learned(client: redis.Redis, provider: str, model: str | None = None) -> Sketch | None:
    """What has been learned about `provider` (and `model`), or None while too little."""
    model, now = model_key(model), time.monotonic()
    found, sketch = _cached(client, provider, model, now)
    if found:
        return sketch
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.learned(provider))
    pipe.hgetall(keys.learned(provider, model) if model else keys.learned(provider))
    both = cast(list[dict[Any, Any]], pipe.execute())
    return _keep(client, provider, model, now, _pick(both[0], both[1] if model else {}))


async def learned_async(client: redis.asyncio.Redis, provider: str,
                        model: str | None = None) -> Sketch | None:
    """`learned` for the receiver's asyncio client."""
    model, now = model_key(model), time.monotonic()
    found, sketch = _cached(client, provider, model, now)
    if found:
        return sketch
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.learned(provider))
    pipe.hgetall(keys.learned(provider, model) if model else keys.learned(provider))
    both = cast(list[dict[Any, Any]], await pipe.execute())
    return _keep(client, provider, model, now, _pick(both[0], both[1] if model else {}))
