"""Callbacks that carry the right token but lie. With the provider's API key configured the
worker trusts only the provider's own status API: forged URLs are never fetched and a forged
task ends without a single download. Task ids that could not name storage objects are refused
at the door."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.helpers import archived_exactly_once
from tests.stack import Stack, running_stack
from tests.support import MotoServer
from tests.worker.image_server import ImageServer, Reply


@pytest.fixture()
def stack(redis_url: str, s3_server: MotoServer, s3_bucket: str,
          tmp_path: Path) -> Iterator[Stack]:
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path) as s:
        yield s


@pytest.fixture()
def attacker() -> Iterator[ImageServer]:
    with ImageServer() as server:
        server.routes["/payload.png"] = Reply(b"\x89PNG not really", content_type="image/png")
        yield server


def completed(task_id: str, urls: list[str]) -> dict[str, Any]:
    return {"id": task_id, "object": "image.generation.task", "model": "gpt-image-2",
            "status": "completed", "progress": 100, "created": 1760000000, "results": urls}


def test_forged_urls_for_a_real_task_are_never_fetched(
    stack: Stack, attacker: ImageServer
) -> None:
    made = stack.sim.create_task("evolink")
    forged = completed(made["id"], [attacker.url("/payload.png")])
    assert httpx.post(stack.callback_url("evolink"), json=forged).status_code == 200
    stack.wait_state("evolink", made["id"], "archived")
    assert attacker.requests == []
    archived_exactly_once(stack, "evolink", made["id"], images=1)


def test_a_forged_task_the_provider_does_not_know_downloads_nothing(
    stack: Stack, attacker: ImageServer
) -> None:
    forged = completed("invented-by-the-attacker", [attacker.url("/payload.png")])
    assert httpx.post(stack.callback_url("evolink"), json=forged).status_code == 200
    task = stack.wait_state("evolink", "invented-by-the-attacker", "archive_failed")
    assert task["error"]["code"] == "task_gone"
    assert attacker.requests == []
    assert stack.objects() == {}


@pytest.mark.parametrize(
    "task_id", ["../../etc/passwd", "a/b", "..", ".", "x" * 257, "line\nbreak", "nul\x00"])
def test_task_ids_that_cannot_name_objects_are_refused_with_422(
    stack: Stack, task_id: str
) -> None:
    r = httpx.post(stack.callback_url("evolink"), json=completed(task_id, ["https://x/1.png"]))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "unreadable_payload"
    assert not stack.db.keys("ai:t:*")
    tracked = stack.api.post("/v1/tasks", json={"provider": "evolink", "task_id": task_id})
    assert tracked.status_code == 422
    assert not stack.db.keys("ai:t:*")
