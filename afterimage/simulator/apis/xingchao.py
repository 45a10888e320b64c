"""xingchao: Bearer auth, unwrapped image objects with one `image_url`."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.routing import Route

from afterimage.simulator.apis.base import (
    AUTH,
    NOT_FOUND,
    RATE_LIMITED,
    SERVER,
    ProviderApi,
)
from afterimage.simulator.state import SimTask

ERRORS = {
    AUTH: ("authentication_error", "invalid_api_key"),
    NOT_FOUND: ("invalid_request_error", "not_found"),
    RATE_LIMITED: ("rate_limit_error", "rate_limited"),
    SERVER: ("server_error", "internal_error"),
}


class XingchaoApi(ProviderApi):
    name = "xingchao"
    single_image = True

    def routes(self) -> list[Route]:
        base = f"/{self.name}/v1"
        return [
            Route(f"{base}/image2/images", self.create, methods=["POST"]),
            Route(f"{base}/result/{{task_id}}", self.status_by_path, methods=["GET"]),
        ]

    def new_id(self) -> str:
        return secrets.token_hex(16)

    def status_path(self, task_id: str) -> str:
        return f"/v1/result/{task_id}"

    def create_reply(self, task: SimTask, now: float) -> dict[str, Any]:
        return {
            "id": task.id,
            "object": "image",
            "created": int(task.created_at),
            "model": task.model,
            "status": "queued",
            "error": None,
        }

    def query_object(self, task: SimTask, now: float) -> dict[str, Any]:
        state = task.state(now)
        if state == "pending":
            status = "queued" if task.progress(now) < 10 else "processing"
        else:
            status = "completed" if state == "succeeded" else "failed"
        error = None
        if state == "failed":
            error = {
                "code": task.error_code or "generation_failed",
                "message": task.error_message or "generation failed",
            }
        return {
            "id": task.id,
            "object": "image.generation",
            "created": int(task.created_at),
            "model": task.model,
            "status": status,
            "image_url": self.urls(task, now)[0] if state == "succeeded" else None,
            "error": error,
        }

    def error_body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        kind_type, code = ERRORS.get(kind, ("invalid_request_error", "invalid_request"))
        return {"error": {"message": message, "type": kind_type, "code": code}}
