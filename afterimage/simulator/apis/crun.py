"""crun: `x-api-key`, a `{"code","message","data"}` envelope, unwrapped callbacks."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from afterimage.simulator.apis.base import INVALID, ProviderApi
from afterimage.simulator.state import SimTask

STATUS = {"pending": "running", "succeeded": "success", "failed": "failed"}


class CrunApi(ProviderApi):
    name = "crun"
    callback_field = "callback_url"

    def routes(self) -> list[Route]:
        base = f"/{self.name}/api/v1/client/job"
        return [
            Route(f"{base}/CreateTask", self.create, methods=["POST"]),
            Route(f"{base}/TaskInfo", self.task_info, methods=["GET"]),
        ]

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def status_path(self, task_id: str) -> str:
        return f"/api/v1/client/job/TaskInfo?task_id={task_id}"

    def given_key(self, request: Request) -> str | None:
        return request.headers.get("x-api-key") or None

    def http_status(self, status: int) -> int:
        return status if self.ctx.config.envelope_status else 200

    async def task_info(self, request: Request) -> Response:
        task_id = request.query_params.get("task_id")
        if not task_id:
            if not self.authorized(request):
                return self.unauthorized()
            return self.error(422, INVALID, "task_id is required")
        return await self.status(request, task_id)

    def create_reply(self, task: SimTask, now: float) -> dict[str, Any]:
        return {"code": 200, "message": "success", "data": {"task_id": task.id}}

    def query_object(self, task: SimTask, now: float) -> dict[str, Any]:
        state = task.state(now)
        result: dict[str, Any] | None = None
        if state == "succeeded":
            result = {"code": 200, "message": "success", "media_urls": self.urls(task, now)}
        elif state == "failed":
            message = task.error_message or "generation failed"
            result = {"code": 501, "message": message, "media_urls": []}
        done = task.completed_at(now)
        param = task.request.get("input")
        return {
            "task_id": task.id,
            "provider": "openai",
            "model_version": task.model,
            "status": STATUS[state],
            "param": param if isinstance(param, dict) else {},
            "create_at": int(task.created_at),
            "complete_at": None if done is None else int(done),
            "duration_s": None if done is None else round(done - task.created_at, 3),
            "result": result,
            "source": "api",
        }

    def wrap(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"code": 200, "message": "success", "data": obj}

    def error_body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        return {"code": status, "message": message, "data": None}

    def callback_body(self, task: SimTask, now: float) -> dict[str, Any]:
        obj = self.query_object(task, now)
        return self.wrap(obj) if self.ctx.config.crun_callback_wrapped else obj
