"""The /v1 API for clients and operators (bearer token)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from afterimage import operations
from afterimage.ledger import list_tasks
from afterimage.models import TaskState
from afterimage.providers import NAMES, adapter
from afterimage.tokens import callback_url, webhook_secret
from receiver.body import load_json, read_request_body, require_json_type
from receiver.errors import ApiError
from receiver.runtime import runtime

MAX_API_BODY = 1024 * 1024
M = TypeVar("M", bound=BaseModel)


class TrackRequest(BaseModel):
    """The body of POST /v1/tasks; its values are checked by afterimage.operations.track."""

    provider: str
    task_id: str
    metadata: Any = None
    model: Any = None
    status_url: Any = None


async def json_body(request: Request) -> Any:
    """The request's JSON body: 415 for a declared non-JSON type, 400 for bytes that are not
    JSON (receiver.body, the callback route's rules)."""
    require_json_type(request.scope)
    return load_json(await read_request_body(request, MAX_API_BODY))


def parse_model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise ApiError(422, "invalid_request", f"{where}: {first['msg']}") from None


async def get_callback_url(request: Request) -> JSONResponse:
    rt = runtime(request)
    rt.require_api_token(request)
    a = adapter(request.path_params["provider"])
    url = callback_url(rt.settings.public_url, rt.settings.secrets[0], a.name)
    out = {"callback_url": url}
    if a.hands_out_secret:  # what the provider must echo in X-Webhook-Secret (bfl)
        out["webhook_secret"] = webhook_secret(rt.settings.secrets[0], a.name)
    return JSONResponse(out)


async def track_task(request: Request) -> JSONResponse:
    rt = runtime(request)
    rt.require_api_token(request)
    req = parse_model(TrackRequest, await json_body(request))
    done = await operations.track(rt.ledger, rt.settings, req.provider, req.task_id,
                                  req.metadata, req.model, req.status_url,
                                  store=request.app.state.store)
    return JSONResponse(done.task.to_json(), status_code=201 if done.created else 200)


async def get_task(request: Request) -> JSONResponse:
    rt = runtime(request)
    rt.require_api_token(request)
    task = await operations.find(rt.ledger, request.app.state.store,
                                 request.path_params["provider"], request.path_params["task_id"])
    return JSONResponse(task.to_json())


async def get_tasks(request: Request) -> JSONResponse:
    rt = runtime(request)
    rt.require_api_token(request)
    q = request.query_params
    states = [q["state"]] if q.get("state") else [s.value for s in TaskState]
    if any(s not in TaskState.__members__.values() for s in states):
        names = ", ".join(s.value for s in TaskState)
        raise ApiError(422, "invalid_request", f"state must be one of {names}")
    providers = [adapter(q["provider"]).name] if q.get("provider") else list(NAMES)
    try:
        limit = min(max(int(q.get("limit", "50")), 1), 1000)
        offset = max(int(q.get("cursor", "0")), 0)
    except ValueError:
        raise ApiError(422, "invalid_request", "limit and cursor must be integers") from None
    tasks = await list_tasks(rt.ledger, states, providers, limit, offset)
    nxt = str(offset + limit) if len(tasks) == limit else None
    return JSONResponse({"tasks": [t.to_json() for t in tasks], "next_cursor": nxt})
