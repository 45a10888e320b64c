"""Duplicate, late and out-of-order callbacks: the first terminal truth wins, each later word
is acknowledged (so the provider stops retrying), counted and logged, and changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.helpers import archived_exactly_once, versioned
from tests.stack import Stack, running_stack
from tests.support import MotoServer, wait_for


@pytest.fixture()
def stack(redis_url: str, s3_server: MotoServer, s3_bucket: str,
          tmp_path: Path) -> Iterator[Stack]:
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path, poller=True,
                       extra_env={"AFTERIMAGE_POLL_SCALE": "0.02"}) as s:
        versioned(s)
        yield s


def status_body(stack: Stack, made: dict[str, Any]) -> dict[str, Any]:
    """What the provider says about the task now (the body its callback carries)."""
    reply = httpx.get(made["status_url"], headers={"Authorization": "Bearer sim-key"})
    body: dict[str, Any] = reply.json()
    return body


def post(stack: Stack, body: dict[str, Any]) -> int:
    return httpx.post(stack.callback_url("evolink"), json=body).status_code


def duplicates(stack: Stack, task_id: str) -> int:
    return int(stack.db.hget(f"ai:t:evolink:{task_id}", "dup") or 0)


def test_a_failed_callback_after_the_task_is_archived_changes_nothing(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    made = stack.sim.create_task("evolink")
    body = status_body(stack, made)
    assert post(stack, body) == 200
    stack.wait_state("evolink", made["id"], "archived")
    failed = {**body, "status": "failed", "results": None,
              "error": {"code": "content_policy", "message": "refused"}}
    with caplog.at_level(logging.INFO, logger="afterimage.receiver"):
        assert post(stack, failed) == 200
        assert post(stack, {**body, "status": "processing", "progress": 40}) == 200
        assert post(stack, body) == 200
    task = stack.task("evolink", made["id"])
    assert task["state"] == "archived"
    assert "error" not in task or task["error"] is None
    assert task["attempts"] == 1
    assert duplicates(stack, made["id"]) == 3
    assert sum("duplicate (archived)" in r.getMessage() for r in caplog.records) == 3
    archived_exactly_once(stack, "evolink", made["id"], images=1)


def test_a_callback_after_the_poller_archived_the_task_changes_nothing(stack: Stack) -> None:
    made = stack.sim.create_task("evolink")  # its callback is late: the poller is first
    assert stack.api.post("/v1/tasks", json={"provider": "evolink",
                                             "task_id": made["id"]}).status_code == 201
    stack.wait_state("evolink", made["id"], "archived")
    assert post(stack, status_body(stack, made)) == 200
    task = stack.task("evolink", made["id"])
    assert task["state"] == "archived"
    assert task["attempts"] == 1
    assert duplicates(stack, made["id"]) == 1
    archived_exactly_once(stack, "evolink", made["id"], images=1)


def test_a_completed_callback_after_the_provider_said_failed_changes_nothing(
    stack: Stack,
) -> None:
    made = stack.sim.create_task("evolink", outcome="failed", error_code="content_policy")
    failed = status_body(stack, made)
    assert post(stack, failed) == 200
    stack.wait_state("evolink", made["id"], "generation_failed")
    forged = {**failed, "status": "completed", "error": None,
              "results": ["http://127.0.0.1:9/never-fetched.png"]}
    assert post(stack, forged) == 200
    task = stack.task("evolink", made["id"])
    assert task["state"] == "generation_failed"
    assert duplicates(stack, made["id"]) == 1
    assert stack.objects(f"archive/evolink/{made['id']}/") == {}


def test_duplicated_and_late_callbacks_from_the_provider_archive_each_task_once(
    stack: Stack,
) -> None:
    stack.sim.set_faults("evolink", duplicate=1.0, copies=3, late=0.5, late_delay=2.0)
    url = stack.callback_url("evolink")
    ids = [stack.sim.create_task("evolink", callback_url=url)["id"] for _ in range(6)]
    wait_for(lambda: all(stack.sim.task("evolink", i)["callbacks"]["delivered"] >= 3
                         for i in ids), 30, "every copy of every callback to be delivered")
    for task_id in ids:
        task = stack.wait_state("evolink", task_id, "archived")
        assert task["attempts"] == 1
        assert duplicates(stack, task_id) == 2
        archived_exactly_once(stack, "evolink", task_id, images=1)
