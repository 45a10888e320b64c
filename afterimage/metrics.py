"""Counters shared by every afterimage process, kept in one Redis hash. Performs no I/O.

Receivers, workers and pollers are separate processes (often several of each), while
Prometheus scrapes one `GET /metrics`. So each process adds to a `Tally` in memory — a dict
update under a lock, no round trip on a request or a job — and writes what it gathered to the
`ai:metrics` hash with HINCRBY in one pipelined call: a worker after each job, the poller once
per loop, the receiver once a second and whenever it is scraped. `families` turns the hash
into Prometheus metric families, so every counter is a total across all processes, and it
survives restarts (Prometheus copes with the reset if Redis is emptied).

Hash fields are `metric|label value|...`; a histogram has `metric|labels...|le=<bound>` per
bucket (not cumulative) and `metric|labels...|sum`. Label values are afterimage's own names
(providers, outcomes), never free text from a request.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from afterimage import keys
from afterimage.settings import PROVIDERS


@dataclass(frozen=True)
class Counter:
    name: str  # without the _total suffix, which the exposition adds
    help: str
    labels: tuple[str, ...]
    outcomes: tuple[str, ...] = ()  # shown as 0 for every provider before they first happen


@dataclass(frozen=True)
class Histogram:
    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]


CALLBACKS = Counter(
    "afterimage_callbacks", "Callbacks received, by provider and outcome (recorded, duplicate, "
    "or the error code of a refusal).", ("provider", "outcome"), ("recorded", "duplicate"))
ARCHIVE_JOBS = Counter(
    "afterimage_archive_jobs", "Archive job runs, by provider and outcome.",
    ("provider", "outcome"), ("archived", "retried", "archive_failed", "expired"))
ARCHIVED_BYTES = Counter(
    "afterimage_archived_bytes", "Image bytes written to storage.", ("provider",))
ARCHIVED_IMAGES = Counter(
    "afterimage_archived_images", "Images written to storage.", ("provider",))
ARCHIVE_SECONDS = Histogram(
    "afterimage_archive_duration_seconds",
    "Time an archive job took to confirm, download, store and write the manifest of a task "
    "(jobs that ended archived).", ("provider",),
    (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0))
POLL_QUERIES = Counter(
    "afterimage_poll_queries", "Status queries the poller sent (a batch query counts once), by "
    "provider and outcome: ok, rate_limited (429), unavailable (5xx, timeouts), error.",
    ("provider", "outcome"), ("ok", "rate_limited"))
NOTIFICATIONS = Counter(
    "afterimage_notifications", "Completion-event deliveries to AFTERIMAGE_NOTIFY_URL, by "
    "outcome: delivered, or failed (one failed attempt; it is retried).", ("outcome",))
COUNTERS = (CALLBACKS, ARCHIVE_JOBS, ARCHIVED_BYTES, ARCHIVED_IMAGES, POLL_QUERIES,
            NOTIFICATIONS)
HISTOGRAMS = (ARCHIVE_SECONDS,)


def _field(name: str, labels: tuple[str, ...], suffix: str = "") -> str:
    return "|".join((name, *labels, suffix) if suffix else (name, *labels))


class Tally:
    """Counts gathered in one process until they are written to Redis. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, float] = {}

    def add(self, metric: Counter, *labels: str, value: float = 1) -> None:
        self._bump(_field(metric.name, labels), value)

    def observe(self, metric: Histogram, *labels: str, value: float) -> None:
        bound = next((b for b in metric.buckets if value <= b), math.inf)
        self._bump(_field(metric.name, labels, f"le={_bound(bound)}"), 1)
        self._bump(_field(metric.name, labels, "sum"), value)

    def _bump(self, field: str, value: float) -> None:
        with self._lock:
            self._counts[field] = self._counts.get(field, 0) + value

    def drain(self) -> dict[str, float]:
        """Take what was gathered (give it back with `restore` if writing it fails)."""
        with self._lock:
            out, self._counts = self._counts, {}
        return out

    def restore(self, counts: Mapping[str, float]) -> None:
        for field, value in counts.items():
            self._bump(field, value)

    def __bool__(self) -> bool:
        return bool(self._counts)


def write(pipe: Any, counts: Mapping[str, float]) -> None:
    """Queue the HINCRBY(FLOAT)s for `counts` on a Redis pipeline (sync or asyncio)."""
    for field, value in counts.items():
        if field.endswith("|sum"):
            pipe.hincrbyfloat(keys.METRICS, field, value)
        else:
            pipe.hincrby(keys.METRICS, field, int(value))


def flush(tally: Tally, client: Any) -> None:
    """Write a tally with a synchronous client; on a Redis error the counts are kept."""
    counts = tally.drain()
    if not counts:
        return
    try:
        pipe = client.pipeline(transaction=False)
        write(pipe, counts)
        pipe.execute()
    except Exception:
        tally.restore(counts)
        raise


def families(raw: Mapping[bytes, bytes]) -> list[Metric]:
    """The Prometheus families for the `ai:metrics` hash (unknown fields are skipped)."""
    values: dict[str, dict[tuple[str, ...], float]] = {}
    for k, v in raw.items():
        name, *parts = k.decode().split("|")
        values.setdefault(name, {})[tuple(parts)] = float(v)
    out: list[Metric] = []
    for c in COUNTERS:
        counter = CounterMetricFamily(c.name, c.help, labels=c.labels)
        seen = {labels: value for labels, value in values.get(c.name, {}).items()
                if len(labels) == len(c.labels)}
        for outcome in c.outcomes:
            for provider in PROVIDERS:
                seen.setdefault((provider, outcome), 0.0)
        for labels, value in sorted(seen.items()):
            counter.add_metric(list(labels), value)
        out.append(counter)
    for h in HISTOGRAMS:
        out.append(_histogram(h, values.get(h.name, {})))
    return out


def _histogram(h: Histogram, values: Mapping[tuple[str, ...], float]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(h.name, h.help, labels=h.labels)
    series: dict[tuple[str, ...], dict[str, float]] = {}
    for labels, value in values.items():
        if len(labels) == len(h.labels) + 1:
            series.setdefault(labels[:-1], {})[labels[-1]] = value
    for labels, fields in sorted(series.items()):
        running = 0.0
        buckets: list[tuple[str, float]] = []
        for bound in (*h.buckets, math.inf):
            running += fields.get(f"le={_bound(bound)}", 0.0)
            buckets.append((_bound(bound), running))
        family.add_metric(list(labels), buckets, fields.get("sum", 0.0))
    return family


def _bound(value: float) -> str:
    return "+Inf" if value == math.inf else repr(value)

