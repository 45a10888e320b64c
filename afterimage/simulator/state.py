"""Simulated tasks and every counter the control API reports; safe to read from any thread."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from afterimage.simulator.images import ImageSpec, extension

# (unix time, HTTP status answered, came in a batch query)
QueryRecord = tuple[float, int, bool]


@dataclass
class CallbackStats:
    attempts: int = 0  # HTTP requests made, retries and duplicates included
    delivered: int = 0  # requests answered 2xx
    failed: int = 0  # requests answered otherwise, or not answered in time
    dropped: int = 0  # callbacks swallowed by the drop fault
    log: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "delivered": self.delivered,
            "failed": self.failed,
            "dropped": self.dropped,
            "log": list(self.log),
        }


@dataclass(eq=False)
class SimTask:
    """One generation: it is pending until `ready_at`, then ends as `outcome`."""

    provider: str
    id: str
    created_at: float
    ready_at: float
    count: int
    image: ImageSpec
    outcome: str  # "succeeded" | "failed"
    link_ttl: float
    token: str  # names the task in image paths
    model: str = "gpt-image-2"
    request: dict[str, Any] = field(default_factory=dict)
    callback_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    result_url: str | None = None  # handed out instead of the image links
    link_exp: float = 0.0  # expiry of the links a status query hands out now
    revoked_before: float = 0.0  # links expiring at or before this are dead
    queries: list[QueryRecord] = field(default_factory=list)
    downloads: Counter[str] = field(default_factory=Counter)
    callbacks: CallbackStats = field(default_factory=CallbackStats)
    timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        self.link_exp = self.ready_at + self.link_ttl

    def state(self, now: float) -> str:
        """`pending`, `succeeded` or `failed` at `now`."""
        return "pending" if now < self.ready_at else self.outcome

    def progress(self, now: float) -> int:
        if now >= self.ready_at:
            return 100
        span = self.ready_at - self.created_at
        return min(99, int(100 * (now - self.created_at) / span)) if span > 0 else 0

    def completed_at(self, now: float) -> float | None:
        return self.ready_at if now >= self.ready_at else None

    @property
    def names(self) -> list[str]:
        ext = extension(self.image.fmt)
        return [f"{index}.{ext}" for index in range(self.count)]

    def path(self, name: str) -> str:
        return f"/files/{self.token}/{name}"


class Store:
    """Tasks by (provider, id) and by file token, plus query logs and per-provider totals."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tasks: dict[tuple[str, str], SimTask] = {}
        self.tokens: dict[str, SimTask] = {}
        self.unknown_queries: dict[tuple[str, str], list[QueryRecord]] = {}
        self.totals: dict[str, Counter[str]] = {}

    def add(self, task: SimTask) -> bool:
        """Keep `task`; False when the provider already has a task with that id."""
        key = (task.provider, task.id)
        with self.lock:
            if key in self.tasks:
                return False
            self.tasks[key] = task
            self.tokens[task.token] = task
            self._count(task.provider, "tasks_created")
        return True

    def get(self, provider: str, task_id: str) -> SimTask | None:
        return self.tasks.get((provider, task_id))

    def by_token(self, token: str) -> SimTask | None:
        return self.tokens.get(token)

    def record_query(
        self,
        provider: str,
        task_id: str,
        task: SimTask | None,
        status: int,
        batch: bool,
        now: float,
        track_unknown: bool,
    ) -> None:
        """Count one status query for one id (a batch query counts once per id)."""
        record = (now, status, batch)
        with self.lock:
            if task is not None:
                task.queries.append(record)
            elif track_unknown:
                self.unknown_queries.setdefault((provider, task_id), []).append(record)
            counters = self._counters(provider)
            counters["status_queries"] += 1
            counters[f"status_{status}"] += 1
            if task is None:
                counters["unknown_queries"] += 1

    def queries(self, provider: str, task_id: str) -> list[QueryRecord]:
        with self.lock:
            task = self.tasks.get((provider, task_id))
            found = task.queries if task else self.unknown_queries.get((provider, task_id), [])
            return list(found)

    def record_download(self, task: SimTask, name: str, truncated: bool) -> None:
        with self.lock:
            task.downloads[name] += 1
            self._count(task.provider, "downloads")
            if truncated:
                self._count(task.provider, "truncated_downloads")

    def count(self, provider: str, counter: str, amount: int = 1) -> None:
        with self.lock:
            self._count(provider, counter, amount)

    def callback_event(self, task: SimTask, event: dict[str, Any], outcome: str) -> None:
        """Log one callback event; `outcome` is attempt, delivered, failed or dropped."""
        with self.lock:
            stats = task.callbacks
            if outcome == "delivered":
                stats.delivered += 1
            elif outcome == "failed":
                stats.failed += 1
            elif outcome == "dropped":
                stats.dropped += 1
            else:
                stats.attempts += 1
            if outcome != "attempt":
                stats.log.append(event)
            self._count(task.provider, f"callbacks_{outcome}")

    def totals_json(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {p: dict(c) for p, c in self.totals.items()}

    def clear(self) -> list[SimTask]:
        """Forget every task and counter; returns the tasks so their timers can be cancelled."""
        with self.lock:
            tasks = list(self.tasks.values())
            self.tasks.clear()
            self.tokens.clear()
            self.unknown_queries.clear()
            self.totals.clear()
        return tasks

    def _counters(self, provider: str) -> Counter[str]:
        counters = self.totals.get(provider)
        if counters is None:
            counters = self.totals[provider] = Counter()
        return counters

    def _count(self, provider: str, counter: str, amount: int = 1) -> None:
        self._counters(provider)[counter] += amount
