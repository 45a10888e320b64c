"""kie: Bearer auth, `{"code","msg","data"}` envelope, ms times, signed wrapped callbacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from afterimage.simulator.apis.base import INVALID, ProviderApi
from afterimage.simulator.state import SimTask

FAIL_CODE = "501"


def kie_signature(key: str, task_id: str, timestamp: str) -> str:
    """base64(HMAC-SHA256(key, taskId + "." + timestamp)), as kie signs its callbacks."""
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class KieApi(ProviderApi):
    name = "kie"
    callback_field = "callBackUrl"

    def routes(self) -> list[Route]:
        base = f"/{self.name}/api/v1/jobs"
        return [
            Route(f"{base}/createTask", self.create, methods=["POST"]),
            Route(f"{base}/recordInfo", self.record_info, methods=["GET"]),
        ]

    def new_id(self) -> str:
        return secrets.token_hex(16)

    def status_path(self, task_id: str) -> str:
        return f"/api/v1/jobs/recordInfo?taskId={task_id}"

    def http_status(self, status: int) -> int:
        return status if self.ctx.config.envelope_status else 200

    async def record_info(self, request: Request) -> Response:
        task_id = request.query_params.get("taskId")
        if not task_id:
            if not self.authorized(request):
                return self.unauthorized()
            return self.error(422, INVALID, "taskId is required")
        return await self.status(request, task_id)

    def _message(self, text: str) -> dict[str, str]:
        return {self.ctx.config.kie_message_field: text}

    def create_reply(self, task: SimTask, now: float) -> dict[str, Any]:
        return {"code": 200, "msg": "success", "data": {"taskId": task.id}}

    def query_object(self, task: SimTask, now: float) -> dict[str, Any]:
        state = task.state(now)
        if state == "pending":
            share = task.progress(now)
            name = "waiting" if share < 20 else "queuing" if share < 40 else "generating"
        else:
            name = "success" if state == "succeeded" else "fail"
        done = task.completed_at(now)
        result = {"resultUrls": self.urls(task, now)} if state == "succeeded" else None
        return {
            "taskId": task.id,
            "model": task.model,
            "state": name,
            "param": json.dumps(task.request),
            "resultJson": "" if result is None else json.dumps(result),
            "failCode": (task.error_code or FAIL_CODE) if state == "failed" else "",
            "failMsg": (task.error_message or "generation failed") if state == "failed" else "",
            "costTime": None if done is None else _ms(done - task.created_at),
            "completeTime": None if done is None else _ms(done),
            "createTime": _ms(task.created_at),
            "updateTime": _ms(task.created_at if done is None else done),
        }

    def wrap(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"code": 200, **self._message("success"), "data": obj}

    def error_body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        return {"code": status, **self._message(message), "data": None}

    def callback_body(self, task: SimTask, now: float) -> dict[str, Any]:
        obj = self.query_object(task, now)
        obj["creditsConsumed"] = 0 if obj["state"] == "fail" else 4 * task.count
        if obj["state"] == "success":
            body: dict[str, Any] = {"code": 200, "msg": "success", "data": obj}
        else:
            code = int(obj["failCode"]) if str(obj["failCode"]).isdigit() else 501
            body = {"code": code, "msg": obj["failMsg"], "data": obj}
        where = self.ctx.config.kie_callback_id
        if where != "data.taskId":
            task_id = obj.pop("taskId")
            if where == "taskId":
                body["taskId"] = task_id
            else:
                obj["task_id"] = task_id
        return body

    def callback_headers(self, task: SimTask, now: float, body: bytes) -> dict[str, str]:
        key = self.ctx.config.kie_webhook_key
        if not key:
            return {}
        timestamp = str(int(now))
        return {
            "X-Webhook-Timestamp": timestamp,
            "X-Webhook-Signature": kie_signature(key, task.id, timestamp),
        }
