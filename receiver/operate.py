"""The /v1 routes that replay tasks and submit through us; the operations themselves are in
afterimage/operations.py, shared with /ops and the CLI."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse

from afterimage import operations
from afterimage.models import TaskState
from afterimage.providers import adapter
from receiver.api import json_body, parse_model
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
    provider = adapter(request.path_params["provider"]).name
    done = await operations.submit(rt.ledger, rt.settings, request.app.state.http, provider,
                                   await json_body(request),
                                   request.query_params.get("model") or None)
    return JSONResponse({"task": done.task.to_json(), "provider_response": done.provider_response},
                        status_code=201)
