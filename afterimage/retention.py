"""Retention: a task in a final state leaves Redis AFTERIMAGE_RETENTION_SECONDS after its last
change, with its record and every index entry (lua/retire.lua), in bounded batches.

Afterwards the bucket is the truth: `GET /v1/tasks/...` answers from the task's manifest, and a
late callback or registration of it ends `archived` from the manifest without downloading or
writing anything (worker/archive.py; afterimage/operations.py and receiver/api.py).
"""

from __future__ import annotations

import json
import logging
import time
from importlib import resources
from typing import Protocol

import redis

from afterimage import keys
from afterimage.ledger import move_args
from afterimage.manifest import task_from_manifest
from afterimage.models import Task, TaskState
from afterimage.providers import NAMES

log = logging.getLogger("afterimage.retention")

RETIRE = resources.files("afterimage").joinpath("lua/retire.lua").read_text()
FINAL = (TaskState.ARCHIVED, TaskState.GENERATION_FAILED, TaskState.EXPIRED)
BATCH = 500  # tasks per script call: 500 small deletions, a short hold of Redis
SWEEP_MAX = 20 * BATCH  # tasks per sweep, so that one sweep never holds its loop for long


class Retention:
    """`sweep()` removes what has outlived the retention; call it every few seconds."""

    def __init__(self, client: redis.Redis, seconds: float, *, batch: int = BATCH,
                 sweep_max: int = SWEEP_MAX) -> None:
        self.seconds = seconds
        self.batch = batch
        self.sweep_max = sweep_max
        self._retire = client.register_script(RETIRE)

    def sweep(self, now: float | None = None) -> int:
        """Remove at most `sweep_max` tasks whose last change is older than the retention;
        returns how many went (a full sweep means more are waiting)."""
        cutoff = (time.time() if now is None else now) - self.seconds
        removed = 0
        for provider in NAMES:
            for state in FINAL:
                while removed < self.sweep_max:
                    n = int(self._retire(args=[keys.PREFIX, provider, state.value, repr(cutoff),
                                               min(self.batch, self.sweep_max - removed)]))
                    removed += n
                    if n < self.batch:
                        break
        return removed


class ManifestStore(Protocol):
    """What reading a manifest needs of the archive store (afterimage.storage's stores)."""

    def key(self, *parts: str) -> str: ...

    def get(self, key: str) -> bytes: ...


def archived_task(store: ManifestStore, provider: str, task_id: str) -> tuple[Task, bytes] | None:
    """The task as its manifest in the bucket tells it, with the manifest, or None when it has
    none (or one that cannot be read). Raises the store's StorageError when the store fails."""
    try:
        raw = store.get(store.key(provider, task_id, "manifest.json"))
    except (KeyError, ValueError):  # no manifest; a task id that cannot name one
        return None
    try:
        return task_from_manifest(provider, task_id, raw), raw
    except ValueError as exc:
        log.error("%s %s: manifest.json unreadable: %s", provider, task_id, exc,
                  extra={"event": "manifest_unreadable", "provider": provider,
                         "task_id": task_id})
        return None


def restore_args(task: Task, allowed: str, *, expect_gen: int | None = None,
                 now: float | None = None, event: str | None = None) -> list[str]:
    """The transition that records a task removed by retention as `archived` again, from its
    manifest (`task`, from archived_task): images, metadata, model and completion time; with
    `event`, its completion event (ledger.move_args)."""
    fields: dict[str, str | float | None] = {
        "img": json.dumps(list(task.images)), "err": None, "urls": None,
        "md": json.dumps(task.metadata) if task.metadata else None,
        "mdl": task.model,
        "ca": task.completed_at.timestamp() if task.completed_at else None,
    }
    return move_args(task.provider, task.task_id, TaskState.ARCHIVED, allowed=allowed,
                     expect_gen=expect_gen, now=now, event=event, fields=fields)
