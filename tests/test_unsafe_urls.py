"""Result URLs that can never be fetched: the download's URL policy decides once, and the task
ends `archive_failed` with `unsafe_url` at once — from a callback or a poll alike, the refused
URL (without its query string) in its error, never polled again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afterimage import keys
from tests.stack import Stack, running_stack
from tests.support import MotoServer

BODY = {"model": "gpt-image-2", "prompt": "a red kite"}


@pytest.fixture()
def make_stack(
    redis_url: str, s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> Iterator[Any]:
    stacks: list[Any] = []

    def make(**options: Any) -> Stack:
        ctx = running_stack(redis_url, s3_server.url, s3_bucket, tmp_path, **options)
        stacks.append(ctx)
        return ctx.__enter__()

    yield make
    for ctx in reversed(stacks):
        ctx.__exit__(None, None, None)


def submit(stack: Stack, provider: str, **sim: Any) -> str:
    r = stack.api.post(f"/v1/providers/{provider}/generations", json={**BODY, "sim": sim})
    assert r.status_code == 201, r.text
    return str(r.json()["task"]["task_id"])


def queries(stack: Stack, provider: str, task_id: str) -> int:
    return int(stack.sim.task(provider, task_id)["queries"]["count"])


def refused(stack: Stack, provider: str, task_id: str, shown: str) -> dict[str, Any]:
    task = stack.wait_state(provider, task_id, "archive_failed")
    assert task["error"]["code"] == "unsafe_url", task
    assert shown in task["error"]["message"], task
    assert "?" not in task["error"]["message"] and "secret" not in task["error"]["message"]
    assert task["attempts"] == 1  # at once: no retries
    assert stack.db.zscore(keys.due(provider), task_id) is None  # never polled again
    return task


@pytest.mark.parametrize("url", ["file:///etc/passwd?sig=secret", "gopher://x.example/1?secret"])
def test_a_callback_with_an_unfetchable_url_ends_unsafe_url_at_once(make_stack: Any,
                                                                    url: str) -> None:
    stack = make_stack(keys=False)  # the callback alone is believed: no status query
    made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"),
                                 result_url=url, delay=0)
    task_id = made["id"]
    refused(stack, "evolink", task_id, url.split("?", 1)[0])
    callbacks = stack.sim.task("evolink", task_id)["callbacks"]
    assert callbacks["delivered"] == 1 and callbacks["failed"] == 0  # answered 200 at once
    assert stack.objects(f"archive/evolink/{task_id}/") == {}


def test_a_polled_result_with_an_unfetchable_url_ends_unsafe_url_and_is_not_asked_again(
    make_stack: Any,
) -> None:
    stack = make_stack(poller=True, extra_env={"AFTERIMAGE_POLL_SCALE": "0.05"})
    task_id = submit(stack, "apimart", result_url="file:///etc/passwd?token=secret")
    refused(stack, "apimart", task_id, "file:///etc/passwd")
    asked = queries(stack, "apimart", task_id)
    assert asked >= 1
    # Another apimart task polled to its end meanwhile: the refused one was not asked again.
    other = submit(stack, "apimart", delay=1.0)
    stack.wait_state("apimart", other, "archived")
    assert queries(stack, "apimart", other) >= 1
    assert queries(stack, "apimart", task_id) == asked


def test_a_non_public_address_ends_unsafe_url_at_once(make_stack: Any) -> None:
    stack = make_stack(poller=True, allow_loopback=False,
                       extra_env={"AFTERIMAGE_POLL_SCALE": "0.05"})
    task_id = submit(stack, "apimart")  # the simulator's links are on 127.0.0.1
    task = refused(stack, "apimart", task_id, f"{stack.sim.url}/")
    assert "non-public" in task["error"]["message"]
