"""Retention: final tasks leave Redis with every index entry, in bounded batches; afterwards the
bucket answers for them (GET, late callbacks, registrations), fetching and writing nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from afterimage import keys
from afterimage.ledger import Ledger, move_args
from afterimage.models import TaskState
from afterimage.retention import Retention
from afterimage.settings import Settings
from tests.stack import Stack, running_stack
from tests.support import MotoServer, wait_for

T0 = 1_763_742_003.0
DAY = 86400.0
BODY = {"model": "gpt-image-2", "prompt": "a red kite"}


def make(ledger: Ledger, task_id: str, path: list[TaskState], now: float,
         provider: str = "evolink") -> None:
    """Walk one task along `path`, each step one second after the last, links expiring late."""
    previous = "none"
    for i, to in enumerate(path):
        due = now + i + 60 if to is TaskState.PENDING else None
        move = ledger.move(move_args(provider, task_id, to, allowed=previous, now=now + i,
                                     due_at=due, fields={"ea": now + 7 * DAY}))
        assert move.ok, (task_id, to)
        previous = to.value


P, Q = TaskState.PENDING, TaskState.QUEUED
LIVES = {
    "archived": [P, Q, TaskState.ARCHIVED],
    "failed": [P, TaskState.GENERATION_FAILED],
    "expired": [P, Q, TaskState.EXPIRED],
    "pending": [P],
    "queued": [P, Q],
    "archive_failed": [P, Q, TaskState.ARCHIVE_FAILED],
}


def everything(db: redis.Redis) -> dict[str, Any]:
    """Every ai: key with its members or fields (what a task may have left behind). The
    per-10-minute counts of endings (ai:outcomes:{day}, kept 25 h) are history, like the
    metrics, not a part of any task, and are left out."""
    out: dict[str, Any] = {}
    for raw in db.scan_iter("ai:*"):
        key = raw.decode()
        if key.startswith(keys.outcomes(0).removesuffix("0")):
            continue
        kind = db.type(key).decode()
        if kind == "zset":
            out[key] = sorted(m.decode() for m in db.zrange(key, 0, -1))
        elif kind == "hash":
            out[key] = sorted(f.decode() for f in db.hkeys(key))
        else:
            out[key] = kind
    return out


def test_final_tasks_leave_redis_with_every_index_entry(redis_url: str) -> None:
    db = redis.Redis.from_url(redis_url)
    ledger = Ledger(db)
    for name, path in LIVES.items():
        make(ledger, f"old-{name}", path, T0)
        make(ledger, f"new-{name}", path, T0 + 20 * DAY)
    db.delete(keys.INBOX)  # the dispatcher's part, not the ledger's
    before = everything(db)
    retention = Retention(db, 30 * DAY)

    assert retention.sweep(now=T0 + 30 * DAY - 10) == 0  # not yet 30 days since the change
    assert everything(db) == before
    assert retention.sweep(now=T0 + 30 * DAY + 10) == 3

    for name in ("archived", "failed", "expired"):
        assert ledger.get("evolink", f"old-{name}") is None
        assert ledger.get("evolink", f"new-{name}") is not None
    for name in ("pending", "queued", "archive_failed"):  # not final: kept, however old
        assert ledger.get("evolink", f"old-{name}") is not None
    # Nothing of the removed tasks is left in any key: what remains is exactly what a Redis
    # that never saw them holds.
    db.flushall()
    for name, path in LIVES.items():
        if name not in ("archived", "failed", "expired"):
            make(ledger, f"old-{name}", path, T0)
        make(ledger, f"new-{name}", path, T0 + 20 * DAY)
    db.delete(keys.INBOX)
    expected = everything(db)
    assert expected != before
    db.flushall()
    for name, path in LIVES.items():
        make(ledger, f"old-{name}", path, T0)
        make(ledger, f"new-{name}", path, T0 + 20 * DAY)
    db.delete(keys.INBOX)
    retention.sweep(now=T0 + 30 * DAY + 10)
    assert everything(db) == expected


def test_a_backlog_goes_in_bounded_batches(redis_url: str) -> None:
    db = redis.Redis.from_url(redis_url)
    ledger = Ledger(db)
    for n in range(25):
        make(ledger, f"t{n}", LIVES["archived"], T0, provider="kie")
    retention = Retention(db, 60.0, batch=4, sweep_max=10)
    later = T0 + 3600
    assert [retention.sweep(now=later) for _ in range(4)] == [10, 10, 5, 0]
    assert db.zcard(keys.state_index("archived", "kie")) == 0
    assert not list(db.scan_iter("ai:t:*"))


def test_a_stale_index_entry_goes_but_a_live_record_stays(redis_url: str) -> None:
    db = redis.Redis.from_url(redis_url)
    ledger = Ledger(db)
    make(ledger, "moved", LIVES["queued"], T0)
    db.zadd(keys.state_index("archived", "evolink"), {"moved": T0})  # not the record's state
    assert Retention(db, 60.0).sweep(now=T0 + 3600) == 1
    assert db.zcard(keys.state_index("archived", "evolink")) == 0
    task = ledger.get("evolink", "moved")
    assert task is not None and task.state is TaskState.QUEUED


def test_retention_setting() -> None:
    assert Settings.from_env({}).retention_seconds == 2592000
    assert Settings.from_env({"AFTERIMAGE_RETENTION_SECONDS": "3"}).retention_seconds == 3
    with pytest.raises(Exception, match="AFTERIMAGE_RETENTION_SECONDS"):
        Settings.from_env({"AFTERIMAGE_RETENTION_SECONDS": "-1"})


# --- against the whole stack -----------------------------------------------------------------


@pytest.fixture()
def stack(redis_url: str, s3_server: MotoServer, s3_bucket: str,
          tmp_path: Path) -> Iterator[Stack]:
    env = {"AFTERIMAGE_RETENTION_SECONDS": "1", "AFTERIMAGE_POLL_SCALE": "0.05"}
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path, poller=True,
                       extra_env=env) as running:
        yield running


def submit(stack: Stack, provider: str, **sim: Any) -> str:
    r = stack.api.post(f"/v1/providers/{provider}/generations", json={**BODY, "sim": sim})
    assert r.status_code == 201, r.text
    return str(r.json()["task"]["task_id"])


def removed(stack: Stack, provider: str, task_id: str) -> None:
    wait_for(lambda: not stack.db.exists(keys.task(provider, task_id)), 30,
             f"{provider} {task_id} to leave Redis")


def test_a_removed_task_is_answered_from_its_manifest(stack: Stack) -> None:
    task_id = submit(stack, "evolink")
    archived = stack.wait_state("evolink", task_id, "archived")
    removed(stack, "evolink", task_id)
    r = stack.api.get(f"/v1/tasks/evolink/{task_id}")
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["state"] == "archived"
    assert again["images"] == archived["images"]
    assert again["completed_at"] == archived["completed_at"]
    assert stack.api.get("/v1/tasks/evolink/never-seen").status_code == 404
    failed = submit(stack, "evolink", outcome="failed")
    stack.wait_state("evolink", failed, "generation_failed")
    removed(stack, "evolink", failed)
    assert stack.api.get(f"/v1/tasks/evolink/{failed}").status_code == 404  # no manifest


def test_a_late_callback_of_a_removed_task_fetches_and_writes_nothing(stack: Stack) -> None:
    task_id = submit(stack, "evolink")
    stack.wait_state("evolink", task_id, "archived")
    removed(stack, "evolink", task_id)
    objects = stack.versions(f"archive/evolink/{task_id}/")
    sim = stack.sim.task("evolink", task_id)
    body = {"id": task_id, "status": "completed", "progress": 100,
            "results": sim["image_urls"], "created": int(sim["created_at"])}
    r = httpx.post(stack.callback_url("evolink"), json=body, timeout=10)
    assert r.status_code == 200, r.text
    wait_for(lambda: stack.db.exists(keys.task("evolink", task_id)), 10, "the callback recorded")
    task = stack.wait_state("evolink", task_id, "archived")
    assert len(task["images"]) == 1
    assert stack.sim.task("evolink", task_id)["downloads"] == sim["downloads"]
    assert stack.versions(f"archive/evolink/{task_id}/") == objects
    assert "archived_from_manifest" in (stack.tmp / "worker0.log").read_text()


def test_a_registration_of_a_removed_task_is_archived_at_once(stack: Stack) -> None:
    task_id = submit(stack, "evolink")
    archived = stack.wait_state("evolink", task_id, "archived")
    removed(stack, "evolink", task_id)
    queries = stack.sim.task("evolink", task_id)["queries"]["count"]
    r = stack.api.post("/v1/tasks", json={"provider": "evolink", "task_id": task_id})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "archived"
    assert r.json()["images"] == archived["images"]
    stored = stack.db.hgetall(keys.task("evolink", task_id))
    assert stored[b"st"] == b"archived"
    assert json.loads(stored[b"img"]) == archived["images"]
    assert stack.sim.task("evolink", task_id)["queries"]["count"] == queries


def test_the_cli_answers_and_tracks_a_removed_task_from_its_manifest(stack: Stack) -> None:
    task_id = submit(stack, "evolink")
    archived = stack.wait_state("evolink", task_id, "archived")
    removed(stack, "evolink", task_id)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "afterimage", *args], env=stack.env,
                              capture_output=True, text=True, timeout=60)

    shown = cli("status", "evolink", task_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["images"] == archived["images"]
    assert not stack.db.exists(keys.task("evolink", task_id))  # a look changes nothing
    tracked = cli("track", "evolink", task_id)
    assert tracked.returncode == 0, tracked.stderr
    assert "(archived)" in tracked.stdout
    assert stack.db.hget(keys.task("evolink", task_id), "st") == b"archived"
    assert cli("status", "evolink", "never-seen").returncode == 1
