"""fal: queue requests per app (`Key` auth), status then result, webhooks signed with Ed25519
by a key listed in the simulator's JWKS."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afterimage.simulator.apis.base import NOT_FOUND, ProviderApi
from afterimage.simulator.state import SimTask

USER_ID = "sim-user"


class FalApi(ProviderApi):
    name = "fal"
    not_found_message = "Request not found"
    callback_field = "fal_webhook"  # a query parameter of the create call, not a body field

    def routes(self) -> list[Route]:
        base = f"/{self.name}"
        requests = f"{base}/{{owner}}/{{app}}/requests/{{task_id}}"
        return [
            Route(f"{base}/.well-known/jwks.json", self.jwks, methods=["GET"]),
            Route(f"{requests}/status", self.status_by_path, methods=["GET"]),
            Route(requests, self.result, methods=["GET"]),
            Route(f"{base}/{{app_id:path}}", self.create, methods=["POST"]),
        ]

    def given_key(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "key" and token.strip() else None

    def body_options(self, body: Any) -> dict[str, Any]:
        values = super().body_options(body)
        values.pop("callback_url", None)
        if isinstance(body.get("num_images"), int):
            values["images"] = body["num_images"]
        return values

    def request_options(self, request: Request) -> dict[str, Any]:
        values: dict[str, Any] = {"model": request.path_params["app_id"]}
        if request.query_params.get("fal_webhook"):
            values["callback_url"] = request.query_params["fal_webhook"]
        return values

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def status_path(self, task_id: str) -> str:
        task = self.ctx.store.get(self.name, task_id)
        app = "/".join((task.model if task else "fal-ai/flux").split("/")[:2])
        return f"/{app}/requests/{task_id}/status"

    def _urls(self, task: SimTask) -> dict[str, str]:
        app = "/".join(task.model.split("/")[:2])
        base = f"{self.ctx.base_url(self.name)}/{app}/requests/{task.id}"
        return {"status_url": f"{base}/status", "response_url": base,
                "cancel_url": f"{base}/cancel"}

    def create_reply(self, task: SimTask, now: float) -> dict[str, Any]:
        return {"request_id": task.id, "gateway_request_id": task.id, **self._urls(task),
                "queue_position": 0}

    def query_object(self, task: SimTask, now: float) -> dict[str, Any]:
        state = task.state(now)
        if state == "pending":
            status = "IN_QUEUE" if task.progress(now) < 10 else "IN_PROGRESS"
            return {"status": status, "request_id": task.id, "queue_position": 0}
        return {"status": "COMPLETED", "request_id": task.id,
                "response_url": self._urls(task)["response_url"]}

    def output(self, task: SimTask, now: float) -> dict[str, Any]:
        spec = task.image
        images = [{"url": u, "content_type": f"image/{spec.fmt}", "width": spec.width,
                   "height": spec.height} for u in self.urls(task, now)]
        if self.ctx.config.fal_output == "image":
            return {"image": images[0], "seed": 1}
        return {"images": images, "seed": 1, "has_nsfw_concepts": [False] * len(images)}

    async def result(self, request: Request) -> Response:
        """The app's output once completed; a failed request answers 422 with its detail."""
        now = time.time()
        if not self.authorized(request):
            return self.unauthorized()
        refused = self.fault(now)
        if refused is not None:
            return refused
        task = self.ctx.store.get(self.name, request.path_params["task_id"])
        if task is None:
            return self.error(404, NOT_FOUND, self.not_found_message)
        state = task.state(now)
        if state == "pending":
            return self.error(400, "invalid", "Request is still in progress")
        if state == "failed":
            return self.error(422, "invalid", task.error_message or "generation failed")
        return JSONResponse(self.output(task, now))

    def error_body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        return {"detail": message}

    def callback_body(self, task: SimTask, now: float) -> dict[str, Any]:
        body: dict[str, Any] = {"request_id": task.id, "gateway_request_id": task.id}
        if task.state(now) == "failed":
            message = task.error_message or "generation failed"
            return body | {"status": "ERROR", "error": message, "payload": {"detail": message}}
        if not self.ctx.config.fal_webhook_payload:
            return body | {"status": "OK", "payload": None,
                           "payload_error": "Payload too large to send"}
        return body | {"status": "OK", "payload": self.output(task, now)}

    def callback_headers(self, task: SimTask, now: float, body: bytes) -> dict[str, str]:
        stamp = str(int(now))
        message = f"{task.id}\n{USER_ID}\n{stamp}\n{hashlib.sha256(body).hexdigest()}"
        signature = self.ctx.fal_key.sign(message.encode()).hex()
        return {"X-Fal-Webhook-Request-Id": task.id, "X-Fal-Webhook-User-Id": USER_ID,
                "X-Fal-Webhook-Timestamp": stamp, "X-Fal-Webhook-Signature": signature}

    async def jwks(self, request: Request) -> Response:
        self.ctx.store.count(self.name, "jwks_fetches")
        keys = []
        for key in (self.ctx.fal_key, *self.ctx.fal_old_keys):
            raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            x = base64.urlsafe_b64encode(raw).decode()
            keys.append({"kty": "OKP", "crv": "Ed25519", "use": "sig",
                         "x": x if self.ctx.config.fal_jwks_padded else x.rstrip("=")})
        return JSONResponse({"keys": keys})
