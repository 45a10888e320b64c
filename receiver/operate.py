"""Operator and client actions that reach beyond Redis: replay and submitting through us."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from afterimage import keys, provider_api
from afterimage.ledger import index_key, move_args, replay_args
from afterimage.models import Task, TaskState, parse_moment
from afterimage.providers import NAMES, adapter
from afterimage.schedule import first_poll
from afterimage.tokens import callback_url
from receiver.api import json_body, parse_model
from receiver.errors import ApiError
from receiver.runtime import Runtime, runtime


class BulkReplay(BaseModel):
    state: TaskState = TaskState.ARCHIVE_FAILED
    provider: str | None = None
    since: float | str | None = None  # unix seconds or RFC 3339
    limit: int = Field(default=1000, ge=1, le=100_000)


NOTHING_TO_DO = {
    "archived": "already archived; nothing to replay",
    "already_queued": "already queued; its archive job is waiting or running",
}


async def replay_one(rt: Runtime, task: Task) -> str:
    """Replay one task: 'queued', 'polling', or 'archived'/'already_queued' (nothing to do)."""
    if task.state is TaskState.ARCHIVED:
        return "archived"
    if task.state is TaskState.PENDING:
        await rt.ledger.redis.zadd(keys.due(task.provider), {task.task_id: time.time()}, xx=True)
        return "polling"
    if task.state is TaskState.QUEUED:
        return "already_queued"
    if task.state is TaskState.GENERATION_FAILED:
        raise ApiError(409, "not_replayable", "the provider says generation failed")
    move = await rt.ledger.move(replay_args(task.provider, task.task_id))
    if move.ok:
        return "queued"
    return "archived" if move.previous == "archived" else "already_queued"


async def replay_task(request: Request) -> JSONResponse:
    rt = runtime(request)
    rt.require_api_token(request)
    provider = adapter(request.path_params["provider"]).name
    task = await rt.ledger.get(provider, request.path_params["task_id"])
    if task is None:
        raise ApiError(404, "task_not_found", "no such task")
    what = await replay_one(rt, task)
    if what in NOTHING_TO_DO:
        return JSONResponse({"queued": [], "state": task.state.value,
                             "message": NOTHING_TO_DO[what]})
    return JSONResponse({"queued": [task.task_id] if what == "queued" else [],
                         "polling": [task.task_id] if what == "polling" else []},
                        status_code=202)


async def replay_many(request: Request) -> JSONResponse:
    rt = runtime(request)
    rt.require_api_token(request)
    req = parse_model(BulkReplay, await json_body(request))
    if req.state.value not in ("archive_failed", "expired"):
        raise ApiError(422, "invalid_request", "state must be archive_failed or expired")
    try:
        since = "-inf" if req.since is None else parse_moment(str(req.since))
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"since: {exc}") from None
    providers = [adapter(req.provider).name] if req.provider else list(NAMES)
    queued: list[dict[str, str]] = []
    for p in providers:
        ids: Any = await rt.ledger.redis.zrangebyscore(
            index_key(req.state.value, p), since, "+inf", start=0, num=req.limit)
        for raw in ids:
            move = await rt.ledger.move(replay_args(p, raw.decode()))
            if move.ok:
                queued.append({"provider": p, "task_id": raw.decode()})
    return JSONResponse({"queued": queued}, status_code=202)


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
