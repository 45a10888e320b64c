"""Replay end to end, and the operator's look-ups: downloads that fail until the fault is gone,
replayed through the API and the CLI, into S3 exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from rq.job import Job

from afterimage import keys
from afterimage.cli import main
from afterimage.manifest import archive_job_id
from tests.stack import Stack, running_stack
from tests.support import MotoServer, wait_for


@pytest.fixture()
def stack(redis_url: str, s3_server: MotoServer, s3_bucket: str, tmp_path: Path) -> Iterator[Stack]:
    """Every download of evolink's images breaks off, and a failed archive is not retried."""
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path,
                       extra_env={"AFTERIMAGE_ARCHIVE_RETRIES": "0"}) as s:
        s.sim.set_faults("evolink", truncate=1.0)
        yield s


def cli(stack: Stack, *args: str) -> Result:
    env = {"AFTERIMAGE_REDIS_URL": stack.redis_url, "AFTERIMAGE_DATA_DIR": str(stack.tmp)}
    return CliRunner().invoke(main, list(args), env=env)


def failed_task(stack: Stack, images: int = 1) -> str:
    made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"),
                                 images=images)
    task = stack.wait_state("evolink", made["id"], "archive_failed")
    assert task["error"]["code"] == "download_interrupted"
    return str(made["id"])


def served(stack: Stack, task_id: str) -> list[bytes]:
    return [httpx.get(u).content for u in stack.sim.task("evolink", task_id)["image_urls"]]


def test_failed_tasks_end_archived_once_the_fault_is_gone(stack: Stack) -> None:
    before = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    one, two = failed_task(stack, images=2), failed_task(stack)
    assert stack.objects() == {}
    stack.sim.set_faults("evolink", truncate=0.0)

    r = stack.api.post(f"/v1/tasks/evolink/{one}/replay")
    assert r.status_code == 202
    assert r.json()["queued"] == [one]
    job_id = archive_job_id("evolink", one, 2)  # made by the dispatcher, a moment later
    wait_for(lambda: Job.exists(job_id, connection=stack.db), 10, "the replay's archive job")
    job = Job.fetch(job_id, connection=stack.db)
    assert job.func_name == "worker.archive.archive_task"  # an ordinary RQ job
    done = cli(stack, "replay", "--state", "archive_failed", "--provider", "evolink",
               "--since", before)
    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == [f"queued: evolink {two}", "1 task(s) queued"]

    for task_id in (one, two):
        task = stack.wait_state("evolink", task_id, "archived")
        assert "error" not in task
        prefix = f"archive/evolink/{task_id}/"
        objects = stack.objects(prefix)
        images = sorted(k for k in objects if not k.endswith("manifest.json"))
        assert [objects[k] for k in images] == served(stack, task_id)
        assert json.loads(objects[prefix + "manifest.json"])["task_id"] == task_id


def test_replaying_twice_is_harmless_and_an_archived_task_queues_nothing(stack: Stack) -> None:
    task_id = failed_task(stack)
    stack.sim.set_faults("evolink", truncate=0.0)
    first = stack.api.post(f"/v1/tasks/evolink/{task_id}/replay")
    second = stack.api.post(f"/v1/tasks/evolink/{task_id}/replay")
    assert first.status_code == 202
    assert first.json()["queued"] == [task_id]
    assert second.json()["queued"] == []  # already queued (or already archived): nothing new
    task = stack.wait_state("evolink", task_id, "archived")

    again = stack.api.post(f"/v1/tasks/evolink/{task_id}/replay")
    assert again.status_code == 200
    assert again.json() == {"queued": [], "state": "archived",
                            "message": "already archived; nothing to replay"}
    by_cli = cli(stack, "replay", "evolink", task_id)
    assert by_cli.exit_code == 0
    assert "already archived; nothing to replay" in by_cli.output
    bulk = stack.api.post("/v1/replay", json={"state": "archive_failed"})
    assert (bulk.status_code, bulk.json()) == (202, {"queued": []})

    assert stack.db.xlen(keys.INBOX) == 0
    assert not Job.exists(archive_job_id("evolink", task_id, 3), connection=stack.db)
    assert stack.task("evolink", task_id)["attempts"] == task["attempts"]
    prefix = f"archive/evolink/{task_id}/"
    assert sorted(stack.versions(prefix)) == [prefix + "0.png", prefix + "manifest.json"]


def test_since_takes_rfc3339_or_unix_seconds_and_skips_older_failures(stack: Stack) -> None:
    task_id = failed_task(stack)
    later = datetime.now(UTC).timestamp() + 60
    for since in (str(later), datetime.fromtimestamp(later, UTC).isoformat()):
        done = cli(stack, "replay", "--state", "archive_failed", "--since", since)
        assert (done.exit_code, done.output) == (0, "0 task(s) queued\n")
    r = stack.api.post("/v1/replay", json={"state": "archive_failed",
                                           "since": "2000-01-01T00:00:00Z"})
    assert r.json() == {"queued": [{"provider": "evolink", "task_id": task_id}]}
    bad = stack.api.post("/v1/replay", json={"state": "archive_failed", "since": "yesterday"})
    assert bad.status_code == 422
    assert cli(stack, "replay", "--state", "archive_failed", "--since", "yesterday").exit_code == 2
    assert cli(stack, "replay", "--state", "archive_failed",
               "--since", "2024-01-01T00:00:00").exit_code == 2  # no offset: ambiguous


def test_status_and_tasks_show_what_happened(stack: Stack) -> None:
    failed = failed_task(stack)
    stack.sim.set_faults("evolink", truncate=0.0)
    made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"), images=2)
    archived = stack.wait_state("evolink", made["id"], "archived")

    shown = cli(stack, "status", "evolink", made["id"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].split() == ["PROVIDER", "TASK", "STATE", "UPDATED", "(UTC)", "IMAGES", "ERROR"]
    assert lines[1].split()[:3] == ["evolink", made["id"], "archived"]
    assert [line.split()[1] for line in lines[2:]] == [i["key"] for i in archived["images"]]
    as_json = json.loads(cli(stack, "status", "evolink", made["id"], "--json").output)
    assert as_json == stack.task("evolink", made["id"])

    listed = cli(stack, "tasks", "--state", "archive_failed").output.splitlines()
    assert listed[1].split()[:3] == ["evolink", failed, "archive_failed"]
    assert stack.task("evolink", failed)["error"]["message"][:40] in listed[1]  # the reason
    every = json.loads(cli(stack, "tasks", "--json").output)
    assert {(t["task_id"], t["state"]) for t in every} == {
        (failed, "archive_failed"), (made["id"], "archived")}
