"""Links that answer 403/404/410 because they expired: the worker asks the provider for a fresh
status; with fresh links the task is archived, without them it ends `expired` at once (never
retried over and over)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rq.job import Job, JobStatus

from afterimage.manifest import archive_job_id
from tests.faults.helpers import archived_exactly_once
from tests.stack import Stack, running_stack
from tests.support import MotoServer, wait_for


@pytest.fixture()
def stack(redis_url: str, s3_server: MotoServer, s3_bucket: str,
          tmp_path: Path) -> Iterator[Stack]:
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path) as s:
        yield s


def expire(stack: Stack, task_id: str) -> None:
    stack.sim.control("POST", f"tasks/evolink/{task_id}/expire")


def queries(stack: Stack, task_id: str) -> int:
    return int(stack.sim.task("evolink", task_id)["queries"]["count"])


def callback_with_dead_links(stack: Stack) -> str:
    """A completed task whose callback arrives after its links have expired."""
    made = stack.sim.create_task("evolink")
    body = httpx.get(made["status_url"], headers={"Authorization": "Bearer sim-key"}).json()
    expire(stack, made["id"])
    assert httpx.post(stack.callback_url("evolink"), json=body).status_code == 200
    return str(made["id"])


@pytest.mark.parametrize("status", [403, 404, 410])
def test_dead_links_and_no_fresh_ones_end_the_task_expired_at_once(
    stack: Stack, status: int
) -> None:
    stack.sim.configure(expired_status=status)
    task_id = callback_with_dead_links(stack)
    task = stack.wait_state("evolink", task_id, "expired")
    assert task["error"]["code"] == "link_expired"
    assert str(status) in task["error"]["message"]
    assert task["attempts"] == 1
    job = Job.fetch(archive_job_id("evolink", task_id, 1), connection=stack.db)
    # no retry is scheduled: the job finishes (RQ marks it just after the task has moved)
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, 10, "the job to finish")
    assert stack.objects(f"archive/evolink/{task_id}/") == {}


def test_a_provider_that_re_signs_links_gets_the_task_archived(stack: Stack) -> None:
    stack.sim.set_faults("evolink", resign=True)
    task_id = callback_with_dead_links(stack)
    stack.wait_state("evolink", task_id, "archived")
    archived_exactly_once(stack, "evolink", task_id, images=1)


@pytest.mark.parametrize("resign", [True, False])
def test_links_found_by_the_poller_that_die_before_the_download_are_asked_for_again(
    redis_url: str, s3_server: MotoServer, s3_bucket: str, tmp_path: Path, resign: bool
) -> None:
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path, workers=0, poller=True,
                       extra_env={"AFTERIMAGE_POLL_SCALE": "0.02"}) as stack:
        task_id = stack.sim.create_task("evolink")["id"]  # no callback: only polling finds it
        assert stack.api.post("/v1/tasks", json={"provider": "evolink",
                                                 "task_id": task_id}).status_code == 201
        stack.wait_state("evolink", task_id, "queued")  # the poller's answer, links included
        stack.stop("poller")
        expire(stack, task_id)
        stack.sim.set_faults("evolink", resign=resign)
        asked = queries(stack, task_id)
        stack.start("worker", "--name", "late")
        if resign:
            stack.wait_state("evolink", task_id, "archived")
            archived_exactly_once(stack, "evolink", task_id, images=1)
        else:
            task = stack.wait_state("evolink", task_id, "expired")
            assert task["error"]["code"] == "link_expired"
        assert queries(stack, task_id) == asked + 1  # one fresh status was asked for
