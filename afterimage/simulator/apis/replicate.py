"""replicate: predictions, webhooks signed per Standard Webhooks, the account's secret."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afterimage.simulator.apis.base import ProviderApi, random_id
from afterimage.simulator.state import SimTask
from afterimage.webhooks import secret_key, sign


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class ReplicateApi(ProviderApi):
    name = "replicate"
    callback_field = "webhook"
    not_found_message = "Not found."

    def routes(self) -> list[Route]:
        base = f"/{self.name}/v1"
        return [
            Route(f"{base}/predictions", self.create, methods=["POST"]),
            Route(f"{base}/predictions/{{task_id}}", self.status_by_path, methods=["GET"]),
            Route(f"{base}/webhooks/default/secret", self.webhook_secret, methods=["GET"]),
        ]

    def new_id(self) -> str:
        return random_id(string.ascii_lowercase + string.digits, 26)

    def status_path(self, task_id: str) -> str:
        return f"/v1/predictions/{task_id}"

    async def webhook_secret(self, request: Request) -> Response:
        if not self.authorized(request):
            return self.unauthorized()
        self.ctx.store.count(self.name, "secret_fetches")
        return JSONResponse({"key": self.ctx.config.replicate_webhook_secret})

    def create_reply(self, task: SimTask, now: float) -> dict[str, Any]:
        return self._prediction(task, now, "starting")

    def query_object(self, task: SimTask, now: float) -> dict[str, Any]:
        state = task.state(now)
        if state == "pending":
            status = "starting" if task.progress(now) < 10 else "processing"
        else:
            status = state  # succeeded | failed
        return self._prediction(task, now, status)

    def _prediction(self, task: SimTask, now: float, status: str) -> dict[str, Any]:
        base = self.ctx.base_url(self.name)
        done = task.completed_at(now) if status in ("succeeded", "failed") else None
        output: Any = None
        if status == "succeeded":
            urls = self.urls(task, now)
            output = urls[0] if self.ctx.config.replicate_output == "string" else urls
        return {
            "id": task.id,
            "model": task.model,
            "version": "sim",
            "input": task.request.get("input", {}),
            "status": status,
            "output": output,
            "error": (task.error_message or "generation failed") if status == "failed" else None,
            "logs": "",
            "created_at": _rfc3339(task.created_at),
            "started_at": _rfc3339(task.created_at),
            "completed_at": None if done is None else _rfc3339(done),
            "urls": {"get": f"{base}/v1/predictions/{task.id}",
                     "cancel": f"{base}/v1/predictions/{task.id}/cancel"},
            "metrics": {},
        }

    def error_body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        return {"detail": message, "status": status}

    def callback_headers(self, task: SimTask, now: float, body: bytes) -> dict[str, str]:
        key = secret_key(self.ctx.config.replicate_webhook_secret)
        msg_id = f"msg_{task.id}"  # the same on every retry
        return {"webhook-id": msg_id, "webhook-timestamp": str(int(now)),
                "webhook-signature": sign(key, msg_id, int(now), body)}
