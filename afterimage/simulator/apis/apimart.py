"""apimart: Bearer auth, `{"code","data"}` replies, no callbacks, a batch status query."""

from __future__ import annotations

import json
import string
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afterimage.simulator.apis.base import (
    AUTH,
    INVALID,
    NOT_FOUND,
    RATE_LIMITED,
    SERVER,
    ProviderApi,
    random_id,
)
from afterimage.simulator.state import SimTask

TYPES = {
    AUTH: "authentication_error",
    NOT_FOUND: "invalid_request_error",
    RATE_LIMITED: "rate_limit_error",
    SERVER: "server_error",
    INVALID: "invalid_request_error",
}
MAX_BATCH = 1000


class ApimartApi(ProviderApi):
    name = "apimart"
    not_found_message = "task does not exist or has expired"

    def routes(self) -> list[Route]:
        base = f"/{self.name}/v1"
        return [
            Route(f"{base}/images/generations", self.create, methods=["POST"]),
            Route(f"{base}/tasks/batch", self.batch, methods=["POST"]),
            Route(f"{base}/tasks/{{task_id}}", self.status_by_path, methods=["GET"]),
        ]

    def new_id(self) -> str:
        return "task_" + random_id(string.ascii_letters + string.digits, 24)

    def status_path(self, task_id: str) -> str:
        return f"/v1/tasks/{task_id}"

    def create_reply(self, task: SimTask, now: float) -> dict[str, Any]:
        return {"code": 200, "data": [{"status": "submitted", "task_id": task.id}]}

    def query_object(self, task: SimTask, now: float) -> dict[str, Any]:
        state = task.state(now)
        progress = task.progress(now)
        if state == "pending":
            status = "submitted" if progress < 10 else "pending" if progress < 30 else "processing"
        else:
            status = "completed" if state == "succeeded" else "failed"
        done = task.completed_at(now)
        span = task.ready_at - task.created_at
        obj: dict[str, Any] = {
            "id": task.id,
            "status": status,
            "progress": progress,
            "created": int(task.created_at),
            "completed": None if done is None else int(done),
            "estimated_time": int(span) if span < float("inf") else 60,
            "actual_time": None if done is None else int(done - task.created_at),
        }
        if state == "succeeded":
            obj["result"] = {"images": self._images(task, now)}
        elif state == "failed":
            obj["error"] = {"message": task.error_message or "generation failed"}
        return obj

    def _images(self, task: SimTask, now: float) -> list[dict[str, Any]]:
        urls = self.urls(task, now)
        expires = int(task.link_exp)
        style = self.ctx.config.apimart_url_style
        if style == "grouped":
            return [{"url": urls, "expires_at": expires}]
        if style == "string":
            return [{"url": url, "expires_at": expires} for url in urls]
        return [{"url": [url], "expires_at": expires} for url in urls]

    def wrap(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"code": 200, "data": obj}

    def error_body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        return {"code": status, "error": {"message": message, "type": TYPES.get(kind, kind)}}

    async def batch(self, request: Request) -> Response:
        """`POST /v1/tasks/batch {"task_ids": [...]}`: known ids only, counted once each."""
        now = time.time()
        if not self.authorized(request):
            return self.unauthorized()
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self.error(400, INVALID, "the request body is not JSON")
        ids = body.get("task_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            return self.error(400, INVALID, "task_ids must be a list of task ids")
        if len(ids) > MAX_BATCH:
            return self.error(400, INVALID, f"at most {MAX_BATCH} task ids per batch")
        store = self.ctx.store
        track = self.ctx.config.track_unknown
        store.count(self.name, "batch_queries")
        refused = self.fault(now)
        if refused is not None:
            for task_id in ids:
                task = store.get(self.name, task_id)
                store.record_query(self.name, task_id, task, refused.status_code, True, now, track)
            return refused
        data = []
        for task_id in dict.fromkeys(ids):
            task, obj = self.describe(task_id, now)
            if obj is not None:
                data.append(obj)
            store.record_query(
                self.name, task_id, task, 200 if obj is not None else 404, True, now, track
            )
        return JSONResponse({"code": 200, "data": data})
