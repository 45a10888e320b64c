"""POST /callbacks/{provider}/{token}: validate, record durably with its dispatch entry, answer.

`Callbacks` is the receiver's outermost ASGI app. It answers callbacks itself, on the raw ASGI
messages, and passes every other request to the Starlette app: the hot path skips Starlette's
middleware, router and Request/Response objects, a fifth of a callback's CPU under load
(bench/README.md). Errors still go through the same handlers as every other route, so a refused
callback gets the same JSON error body, status, log line and `Connection: close`.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from afterimage.errors import AdapterError, CallbackAuthError, UnknownProviderError
from afterimage.ledger import result_args
from afterimage.metrics import CALLBACKS
from afterimage.models import task_id_problem
from afterimage.providers import ADAPTERS
from afterimage.providers.signing import Trust
from afterimage.schedule import first_poll
from receiver.body import read_body, require_json_type
from receiver.errors import ClientGone, answer, code_of
from receiver.runtime import Runtime

log = logging.getLogger("afterimage.receiver")
OK = b'{"code":200,"msg":"success"}'
OK_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(OK))],
}
OK_BODY: Message = {"type": "http.response.body", "body": OK}


class Callbacks:
    """The receiver: callbacks answered here, everything else by `starlette`."""

    def __init__(self, starlette: Starlette) -> None:
        self.starlette = starlette
        self.state = starlette.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/callbacks/"):
            parts = scope["path"].split("/")
            if len(parts) == 4 and parts[2] and parts[3] and scope["method"] == "POST":
                await self._callback(scope, receive, send, parts[2], parts[3])
                return
        await self.starlette(scope, receive, send)

    async def _callback(
        self, scope: Scope, receive: Receive, send: Send, provider: str, token: str
    ) -> None:
        rt: Runtime = self.state.runtime
        try:
            await receive_callback(rt, scope, receive, provider, token)
        except Exception as exc:  # answered as the app's exception handlers answer it
            response = await answer(Request(scope, receive), exc)
            if not isinstance(exc, ClientGone):
                rt.tally.add(CALLBACKS, provider if provider in ADAPTERS else "unknown",
                             code_of(exc))
                await response(scope, receive, send)
            return
        await send(OK_START)
        await send(OK_BODY)


async def receive_callback(
    rt: Runtime, scope: Scope, receive: Receive, provider: str, token: str
) -> None:
    """Check, read, parse and record one callback; raise what the caller should answer."""
    adapter = ADAPTERS.get(provider)
    if adapter is None or not adapter.has_callbacks:
        raise UnknownProviderError(f"no callbacks for provider {provider!r}")
    if not rt.callback_token_ok(provider, token):
        raise CallbackAuthError(f"{provider}: bad callback token")
    settings = rt.settings
    require_json_type(scope)
    body = await read_body(scope, receive, rt.deadlines)
    headers = Headers(scope=scope)
    now = datetime.now(UTC)
    result = adapter.parse_callback(body, headers, now)
    trust = await rt.keyring.verify(adapter, body, headers, result.task_id, now)
    if (problem := task_id_problem(result.task_id)) is not None:
        raise AdapterError(provider, "task id", problem)
    # A signed body is the provider's word, as good as its status API's; any other is confirmed
    # by a status query (where an API key allows one), and so is a result still to be fetched.
    signed = trust is Trust.BODY and not result.fetch
    confirm = provider in settings.api_keys and not signed
    args = result_args(result, confirm=confirm, confirmed=signed, now=time.time(),
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
