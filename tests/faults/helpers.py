"""What the fault tests share: a versioned bucket, the worker busy with a job, counted objects."""

from __future__ import annotations

import collections
import hashlib
import json
from typing import Any

import httpx
from rq import Worker

from tests.stack import Stack


def versioned(stack: Stack) -> None:
    """Keep every version, so that a second write of a key cannot hide."""
    stack.s3.put_bucket_versioning(Bucket=stack.bucket,
                                   VersioningConfiguration={"Status": "Enabled"})


def busy_worker_pid(stack: Stack) -> int | None:
    """The process id of the RQ worker running a job right now, if one is (a worker runs its
    jobs in threads, and is busy while it has any execution, whatever its loop's state)."""
    for worker in Worker.all(connection=stack.db):
        if worker.pid and worker.get_current_executions(refresh=True):
            return int(worker.pid)
    return None


def logged(stack: Stack, text: str) -> bool:
    """Whether any child process of the stack has logged `text` (whole logs are searched)."""
    return any(text in p.read_text(errors="replace") for p in stack.tmp.glob("*.log"))


def versions_by_key(stack: Stack, prefix: str) -> dict[str, int]:
    return dict(collections.Counter(stack.versions(prefix)))


def archived_exactly_once(stack: Stack, provider: str, task_id: str, images: int) -> dict[str, Any]:
    """Every object of the task is there once, whole, with the bytes the provider serves."""
    prefix = f"archive/{provider}/{task_id}/"
    names = [f"{i}.png" for i in range(images)] + ["manifest.json"]
    assert versions_by_key(stack, prefix) == {prefix + n: 1 for n in names}
    objects = stack.objects(prefix)
    manifest: dict[str, Any] = json.loads(objects[prefix + "manifest.json"])
    served = [httpx.get(u).content for u in stack.sim.task(provider, task_id)["image_urls"]]
    for i, body in enumerate(served):
        assert objects[prefix + f"{i}.png"] == body
        assert manifest["images"][i]["sha256"] == hashlib.sha256(body).hexdigest()
    return manifest
