"""The operator's page, /ops: counts by state, a chart of the last 24 hours (receiver/chart.py),
the loops' heartbeats, a task found by its id, the task table filtered by provider and state,
the tasks closest to their link deadline, recent failures with a replay button, recent
archives with thumbnails. The find and filter forms are plain GETs (query parameters
`find_provider`/`find_id` and `provider`/`state`), so a view can be bookmarked.
Server-rendered HTML with plain forms and no JavaScript; every value shown is escaped (Jinja2
autoescape), since task ids and error messages come from providers and clients.

Sign-in is in receiver/session.py; thumbnails come from GET /ops/objects/{key}, which streams
the stored object under a sandboxing Content-Security-Policy.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from afterimage import keys, operations, timeline
from afterimage.components import COMPONENTS, heartbeats
from afterimage.errors import (
    InvalidRequestError,
    NotReplayableError,
    TaskNotFoundError,
    UnknownProviderError,
)
from afterimage.ledger import index_key, list_tasks
from afterimage.models import Task, TaskState, rfc3339
from afterimage.providers import NAMES, adapter
from receiver import chart, session
from receiver.errors import ApiError
from receiver.pages import render, wants_html
from receiver.runtime import runtime

log = logging.getLogger("afterimage.receiver")
DEADLINE_ROWS, FAILURE_ROWS, ARCHIVE_ROWS, TASK_ROWS = 10, 20, 12, 50
# Every state the page counts as a failure; the provider's own failure cannot be replayed.
FAILED = ("archive_failed", "expired", "generation_failed")
LATE = 60.0  # a loop whose last round is older than this is shown as late
SHOWN_TYPES = {"image/png", "image/jpeg", "image/webp", "application/json"}
NOTICES = {
    **operations.REPLAY_MESSAGES,
    "not_replayable": "not replayable: the provider says generation failed",
    "not_found": "no such task",
}
CSS = resources.files("receiver").joinpath("static/ops.css").read_bytes()


async def page(request: Request) -> Response:
    """GET /ops."""
    how = session.auth(request)
    if how is None:
        wrong = "token" in request.query_params  # a token was given, and it is not the one
        if not wants_html(request):  # an API client or a probe: the JSON error object
            raise ApiError(401, "unauthorized",
                           "wrong token" if wrong else "missing or wrong bearer token")
        return render("login.html", 401,
                      error="That is not the API token." if wrong else None)
    if how == "query":  # take the token out of the address bar and history
        return session.start(request, RedirectResponse("/ops", 303))
    rt = runtime(request)
    done = request.query_params.get("done")
    notice = NOTICES.get(done or "")
    if notice and request.query_params.get("task"):
        notice = f"{request.query_params['task']}: {notice}"
    return render("ops.html", notice=notice, csrf=session.csrf_token(rt),
                  **await _gather(request), **await _find(request), **await _table(request))


async def _find(request: Request) -> dict[str, Any]:
    """The find form: `find_provider` + `find_id` -> the task (as GET /v1/tasks/{p}/{id}
    finds it), or why there is none."""
    q = request.query_params
    provider, task_id = q.get("find_provider", ""), q.get("find_id", "").strip()
    out: dict[str, Any] = {"find_provider": provider, "find_id": task_id, "found": None,
                           "find_error": None}
    if not task_id:
        return out
    try:
        task = await operations.find(runtime(request).ledger, request.app.state.store,
                                     provider, task_id)
    except TaskNotFoundError:
        out["find_error"] = f"not found: no {provider} task {task_id}"
    except (InvalidRequestError, UnknownProviderError) as exc:
        out["find_error"] = str(exc)
    else:
        out["found"] = {**_row(task), "json": json.dumps(task.to_json(), indent=2)}
    return out


async def _table(request: Request) -> dict[str, Any]:
    """The task table: the TASK_ROWS most recently changed tasks, narrowed by the filter
    form's `provider` and `state` (empty: all); an unknown value is said and not applied."""
    q = request.query_params
    provider, state = q.get("provider", ""), q.get("state", "")
    states = [s.value for s in TaskState]
    problems = []
    if provider and provider not in NAMES:
        problems.append(f"unknown provider {provider!r}")
        provider = ""
    if state and state not in states:
        problems.append(f"unknown state {state!r}")
        state = ""
    tasks = await list_tasks(runtime(request).ledger, [state] if state else states,
                             [provider] if provider else list(NAMES), TASK_ROWS)
    return {"filter_provider": provider, "filter_state": state,
            "filter_error": "; ".join(problems) or None, "tasks": [_row(t) for t in tasks]}


async def replay(request: Request) -> Response:
    """POST /ops/replay: the replay button."""
    form = await session.checked_form(request)
    rt = runtime(request)
    provider = adapter(form.get("provider", "")).name
    task_id = form.get("task_id", "")
    try:
        what = (await operations.replay_one(rt.ledger, provider, task_id)).outcome
    except (TaskNotFoundError, InvalidRequestError):
        what = "not_found"
    except NotReplayableError:
        what = "not_replayable"
    log.info("ops: replay %s %s -> %s", provider, task_id, what,
             extra={"event": "ops_replay", "provider": provider, "task_id": task_id,
                    "outcome": what})
    query = urlencode({"done": what, "task": f"{provider} {task_id}"})
    return RedirectResponse(f"/ops?{query}", 303)


async def stored_object(request: Request) -> Response:
    """GET /ops/objects/{key}: an archived object, for thumbnails and a closer look."""
    if session.auth(request) is None:
        raise ApiError(401, "unauthorized", "sign in at /ops first")
    store = request.app.state.store
    if store is None:
        raise ApiError(404, "no_storage", "this receiver runs without storage")
    key = request.path_params["key"]
    try:
        found = await run_in_threadpool(store.stream, key)
    except ValueError:  # a key no store could hold
        found = None
    if found is None:
        raise ApiError(404, "not_found", "no such object")
    info, chunks = found
    shown = info.content_type in SHOWN_TYPES
    return StreamingResponse(
        chunks, media_type=info.content_type if shown else "application/octet-stream",
        headers={
            "Content-Length": str(info.size),
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=300",
            **({} if shown else {"Content-Disposition": "attachment"}),
        },
    )  # fmt: skip


async def stylesheet(request: Request) -> Response:
    return Response(CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


async def _gather(request: Request) -> dict[str, Any]:
    """What the page shows, in two pipelined round trips plus the two task lists."""
    ledger = runtime(request).ledger
    states = [s.value for s in TaskState]
    pipe = ledger.redis.pipeline(transaction=False)
    for state in states:
        for provider in NAMES:
            pipe.zcard(index_key(state, provider))
    pipe.hgetall(keys.HEARTBEATS)
    pipe.zrange(keys.DEADLINES, 0, DEADLINE_ROWS - 1, withscores=True)
    replies: list[Any] = await pipe.execute()
    sizes = iter(replies[:-2])
    counts = {s: {p: int(next(sizes)) for p in NAMES} for s in states}
    soonest = [(keys.deadline_task(m), score) for m, score in replies[-1]]
    pipe = ledger.redis.pipeline(transaction=False)
    for (provider, task_id), _ in soonest:
        pipe.hget(keys.task(provider, task_id), "st")
    found: list[Any] = await pipe.execute() if soonest else []
    now = time.time()
    beats = heartbeats(replies[-2], now)
    deadlines = [
        {"provider": p, "task_id": t, "state": (st or b"?").decode(),
         "left": _span(score - now), "passed": score < now}
        for ((p, t), score), st in zip(soonest, found, strict=True)
    ]
    failures = await list_tasks(ledger, list(FAILED), NAMES, FAILURE_ROWS)
    recent = await timeline.read(ledger.redis, now)
    archives = await list_tasks(ledger, ["archived"], NAMES, ARCHIVE_ROWS)
    return {
        "states": states, "providers": NAMES, "counts": counts,
        "totals": {s: sum(counts[s].values()) for s in states},
        "deadlines": deadlines,
        "heartbeats": [
            {"component": c, "age": f"{_span(beats[c][0])} ago" if c in beats else "never",
             "who": beats[c][1] if c in beats else "", "late": beats.get(c, (LATE,))[0] >= LATE}
            for c in COMPONENTS],
        "failures": [_row(t) for t in failures],
        "archives": [_row(t) for t in archives],
        "chart": chart.svg(recent),
        "chart_totals": {**{name: sum(v) for name, v in recent.past.items()},
                         "dying": sum(recent.dying)},
        "now": rfc3339(datetime.fromtimestamp(now, UTC)),
    }


def _row(task: Task) -> dict[str, Any]:
    return {"provider": task.provider, "task_id": task.task_id, "state": task.state.value,
            "updated": task.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            "error": task.error or {}, "images": list(task.images)}


def _span(seconds: float) -> str:
    """'3 h 05 min', '4 min 10 s', 'passed 2 min ago'."""
    if seconds < 0:
        return f"passed {_span(-seconds)} ago"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"

