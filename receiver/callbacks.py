"""POST /callbacks/{provider}/{token}: validate, record durably with its dispatch entry, answer."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from afterimage.errors import (
    AdapterError,
    AfterimageError,
    CallbackAuthError,
    UnknownProviderError,
)
from afterimage.ledger import result_args
from afterimage.metrics import CALLBACKS
from afterimage.models import task_id_problem
from afterimage.providers import ADAPTERS, kie
from afterimage.schedule import first_poll
from receiver.body import read_body
from receiver.runtime import runtime

log = logging.getLogger("afterimage.receiver")
OK = b'{"code":200,"msg":"success"}'


async def receive_callback(request: Request) -> Response:
    try:
        return await _receive(request)
    except Exception as exc:
        provider = request.path_params["provider"]
        code = exc.code if isinstance(exc, AfterimageError) else "internal_error"
        runtime(request).tally.add(CALLBACKS, provider if provider in ADAPTERS else "unknown",
                                   code)
        raise


async def _receive(request: Request) -> Response:
    rt = runtime(request)
    provider = request.path_params["provider"]
    adapter = ADAPTERS.get(provider)
    if adapter is None or not adapter.has_callbacks:
        raise UnknownProviderError(f"no callbacks for provider {provider!r}")
    if not rt.callback_token_ok(provider, request.path_params["token"]):
        raise CallbackAuthError(f"{provider}: bad callback token")
    body = await read_body(request)
    now = datetime.now(UTC)
    result = adapter.parse_callback(body, request.headers, now)
    settings = rt.settings
    if provider == "kie" and settings.kie_hmac_keys:
        kie.verify_signature(
            settings.kie_hmac_keys, result.task_id, request.headers, now,
            settings.kie_signature_tolerance,
        )
    if (problem := task_id_problem(result.task_id)) is not None:
        raise AdapterError(provider, "task id", problem)
    confirm = provider in settings.api_keys
    args = result_args(result, confirm=confirm, now=time.time(),
                       first_poll=first_poll(settings, provider))
    move = await rt.ledger.move(args)
    outcome = "recorded" if move.ok else "duplicate"
    rt.tally.add(CALLBACKS, provider, outcome)
    # A recorded callback is the hot path: at INFO its JSON line cost about a third of the
    # receiver's throughput (bench/README.md), and the task record and the callbacks counter
    # keep what it said. Duplicates stay at INFO.
    level = logging.DEBUG if move.ok else logging.INFO
    if log.isEnabledFor(level):
        log.log(
            level, "callback %s %s %s -> %s",
            provider, result.task_id, result.outcome.value,
            outcome if move.ok else f"duplicate ({move.previous})",
            extra={"event": f"callback_{outcome}", "provider": provider,
                   "task_id": result.task_id, "state": args[4] if move.ok else move.previous,
                   "previous": move.previous},
        )
    return Response(OK, media_type="application/json")
