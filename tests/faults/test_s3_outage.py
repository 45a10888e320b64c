"""The S3 endpoint goes away (the server process stops) and comes back on the same port:
jobs back off and finish; those whose retries run out end archive_failed, and a replay (the
CLI or POST /v1/replay) archives them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.faults.helpers import archived_exactly_once, versioned
from tests.stack import Stack, running_stack
from tests.support import MotoServer, wait_for

BUCKET = "outage"


@pytest.fixture()
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()  # this test's own: it is stopped and started again
    yield server
    server.stop()


def bring_back(moto: MotoServer, stack: Stack) -> None:
    """Start the endpoint again on its port; its memory is gone, so the bucket is made anew."""
    moto.start()
    boto3.client("s3", endpoint_url=moto.url).create_bucket(Bucket=BUCKET)
    versioned(stack)


def make_tasks(stack: Stack, count: int) -> list[str]:
    url = stack.callback_url("evolink")
    return [stack.sim.create_task("evolink", callback_url=url)["id"] for _ in range(count)]


def test_jobs_back_off_while_s3_is_down_and_finish_when_it_returns(
    redis_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    boto3.client("s3", endpoint_url=moto.url).create_bucket(Bucket=BUCKET)
    with running_stack(redis_url, moto.url, BUCKET, tmp_path, workers=2) as stack:
        moto.stop()
        ids = make_tasks(stack, 3)
        wait_for(lambda: all(stack.task("evolink", i)["attempts"] >= 2 for i in ids), 30,
                 "every task to have failed once and been retried")
        assert {stack.task("evolink", i)["state"] for i in ids} == {"queued"}
        bring_back(moto, stack)
        for task_id in ids:
            stack.wait_state("evolink", task_id, "archived", timeout=40)
            archived_exactly_once(stack, "evolink", task_id, images=1)


def test_tasks_whose_retries_run_out_are_replayed_once_s3_is_back(
    redis_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    boto3.client("s3", endpoint_url=moto.url).create_bucket(Bucket=BUCKET)
    with running_stack(redis_url, moto.url, BUCKET, tmp_path, workers=2,
                       extra_env={"AFTERIMAGE_ARCHIVE_RETRIES": "1"}) as stack:
        moto.stop()
        by_cli, by_api = make_tasks(stack, 2)
        for task_id in (by_cli, by_api):
            task = stack.wait_state("evolink", task_id, "archive_failed", timeout=30)
            assert task["error"]["code"] == "storage_error"
        bring_back(moto, stack)

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
