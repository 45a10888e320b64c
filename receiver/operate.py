"""Operator and client actions that reach beyond Redis: replay and submitting through us."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from afterimage import operations, provider_api
from afterimage.ledger import move_args
from afterimage.models import TaskState
from afterimage.providers import adapter
from afterimage.schedule import first_poll
from afterimage.tokens import callback_url
from receiver.api import json_body, parse_model
from receiver.errors import ApiError
from receiver.runtime import runtime


class BulkReplay(BaseModel):
    """The body of POST /v1/replay; its values are checked by afterimage.operations."""

    state: str = TaskState.ARCHIVE_FAILED.value
    provider: str | None = None
    since: float | str | None = None  # unix seconds or RFC 3339
    limit: int | None = None


async def replay_task(request: Request) -> JSONResponse:
    rt = runtime(request)
    rt.require_api_token(request)
    done = await operations.replay_one(
        rt.ledger, request.path_params["provider"], request.path_params["task_id"])
    if not done.acted:
        return JSONResponse({"queued": [], "state": done.task.state.value,
                             "message": done.message})
    task_id = done.task.task_id
    return JSONResponse({"queued": [task_id] if done.outcome == "queued" else [],
                         "polling": [task_id] if done.outcome == "polling" else []},
                        status_code=202)


async def replay_many(request: Request) -> JSONResponse:
    rt = runtime(request)
    rt.require_api_token(request)
    req = parse_model(BulkReplay, await json_body(request))
    queued = await operations.replay_many(rt.ledger, req.state, req.provider, req.since,
                                          req.limit)
    return JSONResponse({"queued": [{"provider": p, "task_id": t} for p, t in queued]},
                        status_code=202)


async def submit(request: Request) -> JSONResponse:
    rt = runtime(request)
    rt.require_api_token(request)
    a = adapter(request.path_params["provider"])
    body: Any = await json_body(request)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "the body must be the provider's JSON object")
    url = callback_url(rt.settings.public_url, rt.settings.secrets[0], a.name)
    task_id, reply = await run_in_threadpool(
        provider_api.create, rt.settings, request.app.state.http, a.name, body, url)
    now = time.time()
    await rt.ledger.move(move_args(a.name, task_id, TaskState.PENDING, allowed="none", now=now,
                                   due_at=now + first_poll(rt.settings, a.name)))
    task = await rt.ledger.get(a.name, task_id)
    assert task is not None
    return JSONResponse({"task": task.to_json(), "provider_response": reply}, status_code=201)
