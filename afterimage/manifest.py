"""The manifest consumers read, and object key layout. Performs no I/O."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from afterimage.models import ImageRecord, Task, rfc3339

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


def archive_job_id(provider: str, task_id: str, generation: int) -> str:
    """An RQ-safe job id (letters, digits, _ and - only), one per task and generation."""
    safe = _JOB_SAFE.sub("-", task_id)[:48]
    digest = hashlib.sha1(task_id.encode(), usedforsecurity=False).hexdigest()[:12]
    return f"archive_{provider}_{safe}_{digest}_{generation}"
