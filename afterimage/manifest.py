"""The manifest consumers read, and object key layout. Performs no I/O."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from afterimage.models import ImageRecord, Task, TaskState, rfc3339

SCHEMA = "afterimage.manifest/1"
_JOB_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def manifest_bytes(
    task: Task, images: Sequence[ImageRecord], archived_at: datetime, model: str | None
) -> bytes:
    """manifest.json: written last, so its presence means the task is complete."""
    doc: dict[str, Any] = {"schema": SCHEMA, "provider": task.provider, "task_id": task.task_id}
    if model:
        doc["model"] = model
    if task.completed_at is not None:
        doc["completed_at"] = rfc3339(task.completed_at)
    doc["archived_at"] = rfc3339(archived_at)
    doc["images"] = [
        {**img.public(), "source_url": img.source_url.split("?", 1)[0]} for img in images
    ]
    doc["metadata"] = task.metadata
    return json.dumps(doc, indent=2, sort_keys=False).encode()


def task_from_manifest(provider: str, task_id: str, raw: bytes) -> Task:
    """The archived task a manifest describes: what `GET /v1/tasks/...` answers once retention
    has removed the task from Redis (the bucket stays the truth). Its creation and last change
    read as the time it was archived; ValueError when `raw` is not such a manifest."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise ValueError("not an afterimage manifest")
        archived = datetime.fromisoformat(doc["archived_at"].replace("Z", "+00:00"))
        completed = doc.get("completed_at")
        images = tuple({k: v for k, v in img.items() if k != "source_url"}
                       for img in doc.get("images", []))
        return Task(
            provider=provider, task_id=task_id, state=TaskState.ARCHIVED,
            created_at=archived, updated_at=archived,
            completed_at=datetime.fromisoformat(completed.replace("Z", "+00:00"))
            if completed else None,
            images=images, metadata=doc.get("metadata") or {}, model=doc.get("model"),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an afterimage manifest: {exc!r}") from None


def archive_job_id(provider: str, task_id: str, generation: int) -> str:
    """An RQ-safe job id (letters, digits, _ and - only), one per task and generation."""
    safe = _JOB_SAFE.sub("-", task_id)[:48]
    digest = hashlib.sha1(task_id.encode(), usedforsecurity=False).hexdigest()[:12]
    return f"archive_{provider}_{safe}_{digest}_{generation}"
