"""evolink: Bearer auth, unwrapped task objects, callbacks retried after 1 s, 2 s, 4 s."""

from __future__ import annotations

import math
import string
import time
from typing import Any

from starlette.routing import Route

from afterimage.simulator.apis.base import (
    AUTH,
    NOT_FOUND,
    RATE_LIMITED,
    SERVER,
    ProviderApi,
    random_id,
)
from afterimage.simulator.state import SimTask

ERRORS = {
    AUTH: ("unauthorized", "authentication_error"),
    NOT_FOUND: ("resource_not_found", "invalid_request_error"),
    RATE_LIMITED: ("rate_limit_exceeded", "rate_limit_error"),
    SERVER: ("service_error", "api_error"),
}


class EvolinkApi(ProviderApi):
    name = "evolink"
    callback_field = "callback_url"
    retries_callbacks = True
    not_found_message = "task id is invalid or has expired"

    def routes(self) -> list[Route]:
        base = f"/{self.name}/v1"
        return [
            Route(f"{base}/images/generations", self.create, methods=["POST"]),
            Route(f"{base}/tasks/{{task_id}}", self.status_by_path, methods=["GET"]),
        ]

    def new_id(self) -> str:
        alphabet = string.ascii_lowercase + string.digits
        return f"task-unified-{int(time.time())}-{random_id(alphabet, 8)}"

    def status_path(self, task_id: str) -> str:
        return f"/v1/tasks/{task_id}"

    def create_reply(self, task: SimTask, now: float) -> dict[str, Any]:
        return self._object(task, now, "pending", 0)

    def query_object(self, task: SimTask, now: float) -> dict[str, Any]:
        return self._object(task, now, task.state(now), task.progress(now))

    def _object(self, task: SimTask, now: float, state: str, progress: int) -> dict[str, Any]:
        if state == "pending":
            status = "pending" if progress < 10 else "processing"
        else:
            status = "completed" if state == "succeeded" else "failed"
        remaining = task.ready_at - now
        obj: dict[str, Any] = {
            "created": int(task.created_at),
            "id": task.id,
            "model": task.model,
            "object": "image.generation.task",
            "progress": progress,
            "status": status,
            "task_info": {
                "can_cancel": state == "pending",
                "estimated_time": math.ceil(remaining) if 0 < remaining < math.inf else 0,
            },
            "type": "image",
            "usage": {
                "billing_rule": "per_call",
                "credits_reserved": 4 * task.count,
                "user_group": "default",
            },
        }
        if state == "succeeded":
            obj["results"] = self.urls(task, now)
        elif state == "failed":
            obj["error"] = {
                "code": task.error_code or "service_error",
                "message": task.error_message or "generation failed",
            }
        return obj

    def error_body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        code, kind_type = ERRORS.get(kind, ("invalid_request", "invalid_request_error"))
        return {"error": {"code": code, "message": message, "type": kind_type}}
