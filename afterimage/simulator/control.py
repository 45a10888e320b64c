"""The control and test API under `/_sim/`: tasks, per-task counters, faults, settings, reset.

GET    /_sim                              base URLs, env lines, the route list
POST   /_sim/tasks                        {"provider", "id"?, "delay"?, "images"?, "format"?,
                                           "width"?, "height"?, "bytes"?, "outcome"?,
                                           "link_ttl"?, "callback_url"?, "model"?,
                                           "error_code"?, "error_message"?, "result_url"?
                                           (handed out instead of the image links)}
                                           -> 201 the task
GET    /_sim/tasks/{provider}/{id}        the task (if known) with "queries" {"count", "log":
                                           [{"at", "status", "batch"}]}, "downloads" {url: n},
                                           "callbacks" {"attempts", "delivered", "failed",
                                           "dropped", "log"}; unknown ids show their queries
POST   /_sim/tasks/{provider}/{id}/complete   finish now (callback goes out now)
POST   /_sim/tasks/{provider}/{id}/expire     kill the links handed out so far
GET    /_sim/faults · POST {"provider"?, <fault>: value, "storm_seconds"?} · DELETE ?provider=
GET    /_sim/config · POST {<setting>: value}     runtime settings (SimConfig fields)
GET    /_sim/stats                        task count and per-provider counters
POST   /_sim/reset                        forget everything; faults and settings as at start
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afterimage.simulator.config import PROVIDERS
from afterimage.simulator.context import SimContext, TaskOptions, check_provider
from afterimage.simulator.state import SimTask


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


class Control:
    """Handlers for `/_sim/*`; every answer is JSON, every error `{"error": "..."}`."""

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        return [
            Route("/_sim", self.info, methods=["GET"]),
            Route("/_sim/stats", self.stats, methods=["GET"]),
            Route("/_sim/reset", self.reset, methods=["POST"]),
            Route("/_sim/config", self.get_config, methods=["GET"]),
            Route("/_sim/config", self.set_config, methods=["POST"]),
            Route("/_sim/faults", self.get_faults, methods=["GET"]),
            Route("/_sim/faults", self.set_faults, methods=["POST"]),
            Route("/_sim/faults", self.clear_faults, methods=["DELETE"]),
            Route("/_sim/tasks", self.create_task, methods=["POST"]),
            Route("/_sim/tasks/{provider}/{task_id}", self.task, methods=["GET"]),
            Route("/_sim/tasks/{provider}/{task_id}/expire", self.expire, methods=["POST"]),
            Route("/_sim/tasks/{provider}/{task_id}/complete", self.complete, methods=["POST"]),
        ]

    async def info(self, request: Request) -> Response:
        ctx = self.ctx
        return JSONResponse(
            {
                "providers": {p: ctx.base_url(p) for p in PROVIDERS},
                "env": {f"AFTERIMAGE_{p.upper()}_BASE_URL": ctx.base_url(p) for p in PROVIDERS},
                "files": f"{ctx.public_url}/files/",
                "control": [
                    f"{', '.join(sorted(r.methods or ()))} {r.path}" for r in self.routes()
                ],
            }
        )

    async def stats(self, request: Request) -> Response:
        store = self.ctx.store
        return JSONResponse({"tasks": len(store.tasks), "providers": store.totals_json()})

    async def reset(self, request: Request) -> Response:
        self.ctx.reset()
        return JSONResponse({"reset": True})

    async def get_config(self, request: Request) -> Response:
        return JSONResponse(self.ctx.config.public())

    async def set_config(self, request: Request) -> Response:
        try:
            self.ctx.config.update(await _json_object(request))
        except ValueError as exc:
            return _error(400, str(exc))
        return JSONResponse(self.ctx.config.public())

    async def get_faults(self, request: Request) -> Response:
        return JSONResponse(self.ctx.faults.snapshot(PROVIDERS))

    async def set_faults(self, request: Request) -> Response:
        """`{"provider"?: name, <fault>: value, ...}`; without provider the change is global."""
        try:
            values = await _json_object(request)
            provider = values.pop("provider", None)
            if provider is not None:
                check_provider(provider)
            self.ctx.faults.set(values, provider)
        except ValueError as exc:
            return _error(400, str(exc))
        return JSONResponse(self.ctx.faults.snapshot(PROVIDERS))

    async def clear_faults(self, request: Request) -> Response:
        provider = request.query_params.get("provider")
        try:
            if provider is not None:
                check_provider(provider)
        except ValueError as exc:
            return _error(400, str(exc))
        self.ctx.faults.clear(provider)
        return JSONResponse(self.ctx.faults.snapshot(PROVIDERS))

    async def create_task(self, request: Request) -> Response:
        """Create a task without the provider's create call; answers its id and image URLs."""
        ctx = self.ctx
        try:
            values = await _json_object(request)
            provider = check_provider(values.pop("provider", ""))
            task_id = values.pop("id", None)
            if task_id is not None and (not isinstance(task_id, str) or not task_id):
                raise ValueError("id must be a non-empty string")
            opts = TaskOptions.from_mapping(values)
        except ValueError as exc:
            return _error(400, str(exc))
        api = ctx.apis[provider]
        if opts.callback_url is not None and api.callback_field is None:
            return _error(400, f"{provider} sends no callbacks")
        if api.single_image:
            opts.images = 1
        task = ctx.create_task(provider, task_id or api.new_id(), opts)
        if task is None:
            return _error(409, f"{provider} already has a task {task_id!r}")
        task.request = {"model": task.model, "prompt": "simulated", "sim": values}
        return JSONResponse(self._describe(task), status_code=201)

    def _task_or_none(self, request: Request) -> SimTask | None:
        return self.ctx.store.get(request.path_params["provider"], request.path_params["task_id"])

    async def task(self, request: Request) -> Response:
        """The task (if known) and its counters: status queries, downloads, callbacks."""
        provider = request.path_params["provider"]
        task_id = request.path_params["task_id"]
        if provider not in PROVIDERS:
            return _error(404, f"unknown provider {provider!r}")
        store = self.ctx.store
        task = store.get(provider, task_id)
        queries = store.queries(provider, task_id)
        out: dict[str, Any] = {
            "provider": provider,
            "id": task_id,
            "known": task is not None,
            "queries": {
                "count": len(queries),
                "log": [{"at": at, "status": code, "batch": batch} for at, code, batch in queries],
            },
            "downloads": {},
            "callbacks": None,
        }
        if task is not None:
            out.update(self._describe(task))
            with store.lock:
                out["downloads"] = {
                    f"{self.ctx.public_url}{task.path(name)}": count
                    for name, count in task.downloads.items()
                }
                out["callbacks"] = task.callbacks.to_json()
        return JSONResponse(out)

    async def expire(self, request: Request) -> Response:
        """Kill the links handed out so far (they answer 403/410 from now on)."""
        task = self._task_or_none(request)
        if task is None:
            return _error(404, "no such task")
        self.ctx.expire_links(task)
        return JSONResponse(self._describe(task))

    async def complete(self, request: Request) -> Response:
        """Finish a pending task now; its callback, if any, is sent at once."""
        task = self._task_or_none(request)
        if task is None:
            return _error(404, "no such task")
        self.ctx.complete_now(task)
        return JSONResponse(self._describe(task))

    def _describe(self, task: SimTask) -> dict[str, Any]:
        ctx = self.ctx
        now = time.time()
        api = ctx.apis[task.provider]
        return {
            "provider": task.provider,
            "id": task.id,
            "known": True,
            "state": task.state(now),
            "outcome": task.outcome,
            "created_at": task.created_at,
            "ready_at": task.ready_at,
            "images": task.count,
            "format": task.image.fmt,
            "width": task.image.width,
            "height": task.image.height,
            "bytes": task.image.nbytes,
            "callback_url": task.callback_url,
            "links_expire_at": int(task.link_exp),
            "image_urls": [ctx.url_for(task, name, task.link_exp) for name in task.names],
            "status_url": ctx.base_url(task.provider) + api.status_path(task.id),
        }
