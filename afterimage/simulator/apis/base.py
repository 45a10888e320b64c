"""What every simulated provider shares: auth, create and status flow, faults, error replies."""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import random
import secrets
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afterimage.simulator.context import SimContext, TaskOptions
from afterimage.simulator.faults import chance
from afterimage.simulator.images import ImageSpec
from afterimage.simulator.state import SimTask

# Error kinds every provider can answer, with their HTTP status.
AUTH, NOT_FOUND, RATE_LIMITED, SERVER, INVALID = (
    "auth",
    "not_found",
    "rate_limited",
    "server",
    "invalid",
)
SERVER_ERRORS = (500, 502, 503)
PHANTOM_IMAGE = ImageSpec("png", 1, 1)


def random_id(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class ProviderApi:
    """One provider's wire shapes; subclasses fill in the shapes and the routes."""

    name: ClassVar[str]
    callback_field: ClassVar[str | None] = None  # where the create body names the callback URL
    retries_callbacks: ClassVar[bool] = False
    single_image: ClassVar[bool] = False  # the reply has room for one URL only
    not_found_message: ClassVar[str] = "task not found"

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx

    # --- to be provided by each provider -------------------------------------------------
    def routes(self) -> list[Route]:
        raise NotImplementedError

    def new_id(self) -> str:
        raise NotImplementedError

    def status_path(self, task_id: str) -> str:
        """Where a single status query for `task_id` goes, below the provider's base URL."""
        raise NotImplementedError

    def create_reply(self, task: SimTask, now: float) -> dict[str, Any]:
        raise NotImplementedError

    def query_object(self, task: SimTask, now: float) -> dict[str, Any]:
        """The task as the status query describes it (unwrapped)."""
        raise NotImplementedError

    def error_body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        raise NotImplementedError

    # --- overridable defaults ------------------------------------------------------------
    def wrap(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The whole status reply around the query object."""
        return obj

    def http_status(self, status: int) -> int:
        return status

    def given_key(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def callback_body(self, task: SimTask, now: float) -> dict[str, Any]:
        return self.query_object(task, now)

    def callback_headers(self, task: SimTask, now: float, body: bytes) -> dict[str, str]:
        """Headers of one callback attempt (signatures) for `body`."""
        return {}

    def request_options(self, request: Request) -> dict[str, Any]:
        """Task options the create request carries outside its body (fal's query, path)."""
        return {}

    def body_options(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Task options read from a create body: `n`, `format`/`output_format`, and `sim`."""
        nested = body.get("input")
        sources = [body, nested] if isinstance(nested, Mapping) else [body]
        values: dict[str, Any] = {}
        for source in reversed(sources):  # the top level wins over `input`
            for key in ("output_format", "format"):
                if source.get(key) is not None:
                    values["format"] = source[key]
            if source.get("n") is not None:
                values["images"] = source["n"]
        if isinstance(body.get("model"), str):
            values["model"] = body["model"]
        if self.callback_field and body.get(self.callback_field) is not None:
            values["callback_url"] = body[self.callback_field]
        for source in sources:
            sim = source.get("sim")
            if isinstance(sim, Mapping):
                values.update(sim)
        return values

    # --- shared behaviour ----------------------------------------------------------------
    def authorized(self, request: Request) -> bool:
        given = self.given_key(request)
        if not given:
            return False
        expected = self.ctx.config.keys.get(self.name)
        return expected is None or hmac.compare_digest(given.encode(), expected.encode())

    def error(
        self, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        body = self.error_body(status, kind, message)
        return JSONResponse(body, status_code=self.http_status(status), headers=headers)

    def unauthorized(self) -> Response:
        return self.error(401, AUTH, "invalid or missing API key")

    def fault(self, now: float) -> Response | None:
        """A simulated 429 or 5xx for a status query, when the switches say so."""
        faults = self.ctx.faults.for_provider(self.name)
        if faults.storming(now) or chance(faults.rate_limit):
            retry_after = str(self.ctx.config.retry_after)
            headers = {"retry-after": retry_after}
            return self.error(429, RATE_LIMITED, "rate limit exceeded", headers)
        if chance(faults.server_error):
            return self.error(random.choice(SERVER_ERRORS), SERVER, "internal server error")
        return None

    def describe(self, task_id: str, now: float) -> tuple[SimTask | None, dict[str, Any] | None]:
        """The query object for `task_id`, or None when the id is unknown (not-found mode)."""
        task = self.ctx.store.get(self.name, task_id)
        if task is not None:
            return task, self.query_object(task, now)
        if self.ctx.config.unknown == "pending":
            return None, self.query_object(self.phantom(task_id, now), now)
        return None, None

    def phantom(self, task_id: str, now: float) -> SimTask:
        """A never-finishing stand-in for an unknown id (the cheap `pending` mode)."""
        return SimTask(self.name, task_id, now, math.inf, 1, PHANTOM_IMAGE, "succeeded", 0.0, "")

    def urls(self, task: SimTask, now: float) -> list[str]:
        return self.ctx.links(task, now)

    async def create(self, request: Request) -> Response:
        if not self.authorized(request):
            return self.unauthorized()
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self.error(400, INVALID, "the request body is not JSON")
        if not isinstance(body, dict):
            return self.error(400, INVALID, "the request body must be a JSON object")
        try:
            opts = TaskOptions.from_mapping(
                {**self.body_options(body), **self.request_options(request)})
        except ValueError as exc:
            return self.error(422, INVALID, str(exc))
        if self.single_image:
            opts.images = 1
        task = None
        while task is None:
            task = self.ctx.create_task(self.name, self.new_id(), opts)
        task.request = body
        return JSONResponse(self.create_reply(task, task.created_at))

    async def status_by_path(self, request: Request) -> Response:
        return await self.status(request, request.path_params["task_id"])

    async def status(self, request: Request, task_id: str) -> Response:
        """Answer one status query and count it against the id (when it came); with the
        `slow_status` fault, only after that many seconds."""
        now = time.time()
        delay = self.ctx.faults.for_provider(self.name).slow_status
        if delay > 0:
            await asyncio.sleep(delay)
        response = self._status(request, task_id, time.time())
        store = self.ctx.store
        task = store.get(self.name, task_id)
        config = self.ctx.config
        store.record_query(
            self.name, task_id, task, response.status_code, False, now, config.track_unknown
        )
        return response

    def _status(self, request: Request, task_id: str, now: float) -> Response:
        if not self.authorized(request):
            return self.unauthorized()
        refused = self.fault(now)
        if refused is not None:
            return refused
        _, obj = self.describe(task_id, now)
        if obj is None:
            return self.error(404, NOT_FOUND, self.not_found_message)
        return JSONResponse(self.wrap(obj))
