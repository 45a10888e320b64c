"""bfl: `x-key` auth, create by model path, polling URLs, webhooks echoing the given secret,
one ten-minute link per task."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from afterimage.simulator.apis.base import INVALID, RATE_LIMITED, ProviderApi
from afterimage.simulator.state import SimTask


class BflApi(ProviderApi):
    name = "bfl"
    callback_field = "webhook_url"
    single_image = True
    not_found_message = "Task not found"

    def routes(self) -> list[Route]:
        base = f"/{self.name}/v1"
        return [
            Route(f"{base}/get_result", self.get_result, methods=["GET"]),
            Route(f"{base}/{{model}}", self.create, methods=["POST"]),
        ]

    def given_key(self, request: Request) -> str | None:
        return request.headers.get("x-key", "").strip() or None

    def request_options(self, request: Request) -> dict[str, Any]:
        return {"model": request.path_params["model"]}

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def status_path(self, task_id: str) -> str:
        return f"/v1/get_result?id={task_id}"

    async def get_result(self, request: Request) -> Response:
        task_id = request.query_params.get("id")
        if not task_id:
            if not self.authorized(request):
                return self.unauthorized()
            return self.error(422, INVALID, "id is required")
        return await self.status(request, task_id)

    def create_reply(self, task: SimTask, now: float) -> dict[str, Any]:
        return {"id": task.id, "polling_url": self.ctx.base_url(self.name)
                + self.status_path(task.id)}

    def query_object(self, task: SimTask, now: float) -> dict[str, Any]:
        state = task.state(now)
        if state == "pending":
            return {"id": task.id, "status": "Pending", "result": None,
                    "progress": task.progress(now) / 100}
        if state == "failed":
            status = task.error_code if task.error_code in (
                "Error", "Request Moderated", "Content Moderated") else "Error"
            return {"id": task.id, "status": status, "result": None, "progress": None,
                    "details": task.error_message}
        done = task.completed_at(now) or now
        return {"id": task.id, "status": "Ready", "progress": None, "details": None,
                "result": {"sample": self.urls(task, now)[0], "prompt": "simulated", "seed": 1,
                           "start_time": task.created_at, "end_time": done,
                           "duration": done - task.created_at}}

    def error_body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        body: dict[str, Any] = {"detail": message}
        if kind == RATE_LIMITED:
            body["retry_after"] = self.ctx.config.retry_after
        return body

    def callback_headers(self, task: SimTask, now: float, body: bytes) -> dict[str, str]:
        sim = task.request.get("sim")
        secret = task.request.get("webhook_secret") or (
            sim.get("webhook_secret") if isinstance(sim, dict) else None)
        return {"X-Webhook-Secret": secret} if isinstance(secret, str) and secret else {}
