"""toapis: Bearer auth, unwrapped generation tasks with a single `url` and `expires_at`."""

from __future__ import annotations

import string
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
    AUTH: ("authentication_error", "invalid_api_key"),
    NOT_FOUND: ("invalid_request_error", "task_not_found"),
    RATE_LIMITED: ("rate_limit_exceeded", "rate_limit_exceeded"),
    SERVER: ("server_error", "internal_error"),
}


class ToapisApi(ProviderApi):
    name = "toapis"

    def routes(self) -> list[Route]:
        base = f"/{self.name}/v1/images/generations"
        return [
            Route(base, self.create, methods=["POST"]),
            Route(f"{base}/{{task_id}}", self.status_by_path, methods=["GET"]),
        ]

    def new_id(self) -> str:
        return "task_img_" + random_id(string.ascii_lowercase + string.digits, 24)

    def status_path(self, task_id: str) -> str:
        return f"/v1/images/generations/{task_id}"

    def create_reply(self, task: SimTask, now: float) -> dict[str, Any]:
        return {
            "id": task.id,
            "object": "generation.task",
            "model": task.model,
            "status": "queued",
            "progress": 0,
            "created_at": int(task.created_at),
            "metadata": {},
        }

    def query_object(self, task: SimTask, now: float) -> dict[str, Any]:
        state = task.state(now)
        progress = task.progress(now)
        if state == "pending":
            status = "queued" if progress < 10 else "in_progress"
        else:
            status = "completed" if state == "succeeded" else "failed"
        done = task.completed_at(now)
        obj: dict[str, Any] = {
            "id": task.id,
            "object": "generation.task",
            "model": task.model,
            "status": status,
            "progress": progress,
            "created_at": int(task.created_at),
            "completed_at": None if done is None else int(done),
            "expires_at": None,
            "result": None,
            "error": None,
        }
        if state == "succeeded":
            urls = self.urls(task, now)
            obj["url"] = urls[0]
            obj["expires_at"] = int(task.link_exp)
            obj["result"] = {"type": "image", "data": [{"url": url} for url in urls]}
        elif state == "failed":
            obj["error"] = {
                "code": task.error_code or "generation_failed",
                "message": task.error_message or "generation failed",
            }
        return obj

    def error_body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        kind_type, code = ERRORS.get(kind, ("invalid_request_error", "invalid_request"))
        return {"error": {"message": message, "type": kind_type, "code": code}}
