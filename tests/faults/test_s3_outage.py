"""The object store goes away (SeaweedFS killed) and comes back on the same ports with its
data: jobs back off and finish; those whose retries run out end archive_failed, and a replay
(the CLI or POST /v1/replay) archives them. Workers that start while it is away check it for
put-once before their first write."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.helpers import archived_exactly_once, versioned
from tests.seaweed import SeaweedServer
from tests.stack import Stack, running_stack
from tests.support import wait_for

BUCKET = "outage"


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SeaweedServer]:
    """This test's own SeaweedFS: it is killed and started again."""
    server = SeaweedServer(tmp_path / "seaweedfs").start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


def bring_back(store: SeaweedServer, stack: Stack) -> None:
    """Start the store again on its ports, with the data it had (the bucket among them)."""
    store.start()
    versioned(stack)


def make_tasks(stack: Stack, count: int) -> list[str]:
    url = stack.callback_url("evolink")
    return [stack.sim.create_task("evolink", callback_url=url)["id"] for _ in range(count)]


@pytest.mark.timeout(300)  # after the store returns, the next retry is up to 60 s away
def test_jobs_back_off_while_s3_is_down_and_finish_when_it_returns(
    redis_url: str, store: SeaweedServer, tmp_path: Path
) -> None:
    with running_stack(redis_url, store.url, BUCKET, tmp_path, workers=2) as stack:
        store.kill()
        ids = make_tasks(stack, 3)
        wait_for(lambda: all(stack.task("evolink", i)["attempts"] >= 2 for i in ids), 30,
                 "every task to have failed once and been retried")
        assert {stack.task("evolink", i)["state"] for i in ids} == {"queued"}
        bring_back(store, stack)
        for task_id in ids:
            stack.wait_state("evolink", task_id, "archived", timeout=150)
            archived_exactly_once(stack, "evolink", task_id, images=1)


def test_tasks_whose_retries_run_out_are_replayed_once_s3_is_back(
    redis_url: str, store: SeaweedServer, tmp_path: Path
) -> None:
    with running_stack(redis_url, store.url, BUCKET, tmp_path, workers=2,
                       extra_env={"AFTERIMAGE_ARCHIVE_RETRIES": "1"}) as stack:
        store.kill()
        by_cli, by_api = make_tasks(stack, 2)
        for task_id in (by_cli, by_api):
            task = stack.wait_state("evolink", task_id, "archive_failed", timeout=30)
            assert task["error"]["code"] == "storage_error"
        bring_back(store, stack)

        cli = subprocess.run([sys.executable, "-m", "afterimage", "replay", "evolink", by_cli],
                             env=stack.env, capture_output=True, text=True, timeout=30)
        assert cli.returncode == 0, cli.stderr
        stack.wait_state("evolink", by_cli, "archived", timeout=30)
        reply = stack.api.post("/v1/replay", json={"state": "archive_failed"})
        assert reply.status_code == 202
        assert reply.json()["queued"] == [{"provider": "evolink", "task_id": by_api}]
        stack.wait_state("evolink", by_api, "archived", timeout=30)
        for task_id in (by_cli, by_api):
            archived_exactly_once(stack, "evolink", task_id, images=1)
        again = stack.api.post(f"/v1/tasks/evolink/{by_api}/replay")
        assert again.status_code == 200  # already archived: nothing queued
