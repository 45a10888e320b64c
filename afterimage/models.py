"""Plain data: task states, normalized provider results, images and tasks. Performs no I/O."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class TaskState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    ARCHIVED = "archived"
    GENERATION_FAILED = "generation_failed"
    ARCHIVE_FAILED = "archive_failed"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.ARCHIVED, TaskState.GENERATION_FAILED, TaskState.EXPIRED)


class Outcome(StrEnum):
    """A provider's word on a task, normalized."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class ProviderResult:
    """What a callback or a status reply says about one task."""

    provider: str
    task_id: str
    outcome: Outcome
    urls: tuple[str, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    model: str | None = None
    fetch: bool = False  # succeeded, but the URLs must be fetched (ProviderAdapter.result_request)
    eta: float | None = None  # pending: seconds until the provider expects to finish, if it says


@dataclass(frozen=True)
class TaskRef:
    """What a status query may need besides the task id: the model or app the task runs on
    (fal names it in the URL path) and the polling URL the provider handed out (bfl)."""

    task_id: str
    model: str | None = None
    status_url: str | None = None


@dataclass(frozen=True)
class Created:
    """What a create reply tells: the new task's id and, for some providers, where to poll it."""

    task_id: str
    status_url: str | None = None


@dataclass(frozen=True)
class HttpRequest:
    """A request an adapter builds and the network layer sends."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None


@dataclass(frozen=True)
class ImageRecord:
    index: int
    key: str
    bytes: int
    sha256: str
    content_type: str
    width: int
    height: int
    source_url: str = ""

    def public(self) -> dict[str, Any]:
        """The task view of the image (no source URL)."""
        return {
            "index": self.index,
            "key": self.key,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "width": self.width,
            "height": self.height,
        }


@dataclass(frozen=True)
class Task:
    provider: str
    task_id: str
    state: TaskState
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    images: tuple[dict[str, Any], ...] = ()
    error: dict[str, str] | None = None
    attempts: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    model: str | None = None
    generation: int = 0
    confirmed: bool = False
    status_url: str | None = None

    @property
    def ref(self) -> TaskRef:
        return TaskRef(self.task_id, self.model, self.status_url)

    def to_json(self) -> dict[str, Any]:
        """The contract's task representation."""
        out: dict[str, Any] = {
            "provider": self.provider,
            "task_id": self.task_id,
            "state": self.state.value,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "images": list(self.images),
            "attempts": self.attempts,
            "metadata": self.metadata,
        }
        if self.completed_at is not None:
            out["completed_at"] = rfc3339(self.completed_at)
        if self.expires_at is not None:
            out["expires_at"] = rfc3339(self.expires_at)
        if self.error is not None:
            out["error"] = self.error
        return out


MAX_TASK_ID = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def task_id_problem(task_id: str) -> str | None:
    """Why `task_id` cannot name a task, or None. It becomes one segment of every object key
    (`<provider>/<task_id>/0.png`), so it may not be `.` or `..`, hold a slash or a control
    character, or be empty or longer than MAX_TASK_ID characters."""
    if not 0 < len(task_id) <= MAX_TASK_ID:
        return f"a task id must be 1 to {MAX_TASK_ID} characters long"
    if task_id in (".", "..") or "/" in task_id:
        return "a task id must not be '.' or '..' or hold a '/'"
    if _CONTROL.search(task_id):
        return "a task id must not hold control characters"
    return None


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with a trailing Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def parse_moment(text: str) -> float:
    """Unix seconds from unix seconds or an RFC 3339 time with its offset; ValueError if neither."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"not a finite number of seconds: {text!r}")
        return seconds
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an RFC 3339 time or unix seconds: {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"an RFC 3339 time needs its offset (Z or +hh:mm): {text!r}")
    return moment.timestamp()
