"""End to end: the simulator's callbacks through the receiver and workers into S3."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.stack import Stack, running_stack
from tests.support import MotoServer, wait_for


@pytest.fixture()
def stack(redis_url: str, s3_server: MotoServer, s3_bucket: str, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path) as s:
        yield s


def sim_image_bytes(stack: Stack, provider: str, task_id: str) -> list[bytes]:
    """The images as the provider serves them (fresh links from its status API)."""
    urls = stack.sim.task(provider, task_id)["image_urls"]
    return [httpx.get(u).content for u in urls]


def test_a_callback_ends_as_the_right_bytes_in_s3_with_the_manifest(stack: Stack) -> None:
    made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"), images=2)
    task_id = made["id"]
    task = stack.wait_state("evolink", task_id, "archived")
    prefix = f"archive/evolink/{task_id}/"
    objects = stack.objects(prefix)
    assert sorted(objects) == [prefix + "0.png", prefix + "1.png", prefix + "manifest.json"]
    expected = sim_image_bytes(stack, "evolink", task_id)
    assert [objects[prefix + "0.png"], objects[prefix + "1.png"]] == expected
    manifest = json.loads(objects[prefix + "manifest.json"])
    assert manifest["schema"] == "afterimage.manifest/1"
    assert manifest["task_id"] == task_id
    assert [i["sha256"] for i in manifest["images"]] == [
        hashlib.sha256(b).hexdigest() for b in expected]
    assert all("?" not in i["source_url"] for i in manifest["images"])
    assert [i["key"] for i in task["images"]] == [prefix + "0.png", prefix + "1.png"]
    head = stack.s3.head_object(Bucket=stack.bucket, Key=prefix + "0.png")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"]["afterimage-sha256"] == manifest["images"][0]["sha256"]
    assert head["Metadata"]["afterimage-task-id"] == task_id


def test_the_same_callback_three_times_leaves_one_set_of_objects(stack: Stack) -> None:
    made = stack.sim.create_task("evolink")
    task_id = made["id"]
    body = httpx.get(made["status_url"], headers={"Authorization": "Bearer sim-key"}).json()
    for _ in range(3):
        assert httpx.post(stack.callback_url("evolink"), json=body).status_code == 200
    stack.wait_state("evolink", task_id, "archived")
    prefix = f"archive/evolink/{task_id}/"
    assert sorted(stack.versions(prefix)) == [prefix + "0.png", prefix + "manifest.json"]
    assert stack.task("evolink", task_id)["attempts"] == 1


def test_a_truncated_download_is_retried_and_never_stored(stack: Stack) -> None:
    stack.sim.set_faults("evolink", truncate=1.0)
    made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
    task_id = made["id"]
    wait_for(lambda: sum(stack.sim.task("evolink", task_id)["downloads"].values()) >= 1, 20,
             "a first (truncated) download")
    assert stack.objects(f"archive/evolink/{task_id}/") == {}
    stack.sim.set_faults("evolink", truncate=0.0)
    stack.wait_state("evolink", task_id, "archived", timeout=40)
    prefix = f"archive/evolink/{task_id}/"
    assert stack.objects(prefix)[prefix + "0.png"] == sim_image_bytes(stack, "evolink", task_id)[0]
    assert stack.task("evolink", task_id)["attempts"] >= 2


def test_a_loopback_url_outside_the_allow_list_is_never_fetched(
    redis_url: str, s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path, keys=False,
                       allow_loopback=False) as stack:
        made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
        task = stack.wait_state("evolink", made["id"], "archive_failed")
        assert task["error"]["code"] == "unsafe_url"
        assert "AFTERIMAGE_DOWNLOAD_ALLOW_CIDRS" in task["error"]["message"]  # the fix, named
        assert stack.sim.task("evolink", made["id"])["downloads"] == {}
        assert stack.objects() == {}
        env = {**stack.env, "AFTERIMAGE_DATA_DIR": str(tmp_path)}
        for args in (["status", "evolink", made["id"]], ["tasks", "--state", "archive_failed"]):
            shown = subprocess.run([sys.executable, "-m", "afterimage", *args], env=env,
                                   capture_output=True, text=True, timeout=60, check=True).stdout
            assert f"unsafe_url: {task['error']['message']}" in shown  # the whole error
