"""Reading a request body under a byte cap and a time limit, from the raw ASGI messages, and
the rule for which bodies are JSON (the callback route and the /v1 API alike)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope

from afterimage.errors import NotJsonError
from receiver.deadlines import BodyDeadlines
from receiver.errors import ApiError, ClientGone
from receiver.runtime import runtime

MAX_CALLBACK_BYTES = 1024 * 1024


def require_json_type(scope: Scope) -> None:
    """415 when a Content-Type is declared and it is not JSON (`application/json` or any
    `type/subtype+json`, parameters such as charset ignored). A missing or empty one is read
    as JSON: some providers send none."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            if media and media != b"application/json" and not _structured_json(media):
                shown = media.decode("latin-1")[:100]
                raise ApiError(415, "unsupported_media_type",
                               f"Content-Type {shown!r} is not JSON; send application/json")
            return


def _structured_json(media: bytes) -> bool:
    """`*/*+json` (RFC 6839): a type, a slash, and a subtype ending in +json."""
    kind, slash, subtype = media.partition(b"/")
    return bool(kind) and bool(slash) and subtype.endswith(b"+json") and len(subtype) > 5


def load_json(body: bytes) -> Any:
    """The body as JSON; 400 when it is not valid JSON or is nested deeper than the parser
    allows (the status NotJsonError has in a callback)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        problem = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
        raise ApiError(400, NotJsonError.code, f"the body is not JSON: {problem}") from None


async def read_request_body(request: Request, limit: int = MAX_CALLBACK_BYTES) -> bytes:
    """`read_body` for a Starlette route."""
    return await read_body(request.scope, request.receive, runtime(request).deadlines, limit)


async def read_body(
    scope: Scope, receive: Receive, deadlines: BodyDeadlines, limit: int = MAX_CALLBACK_BYTES
) -> bytes:
    """The body from the ASGI messages: 413 past `limit` (declared or counted while it
    streams in), 408 when it takes longer than the `callback_read_timeout` setting
    (AFTERIMAGE_CALLBACK_READ_TIMEOUT). Marks the request's state once the body is complete
    (receiver.errors keeps the connection open after that)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise ApiError(413, "body_too_large", f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    task = deadlines.start()
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "body_too_large", f"body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except asyncio.CancelledError:
        if deadlines.expired(task):
            raise ApiError(408, "body_timeout",
                           f"body not received within {deadlines.timeout:g} s") from None
        raise
    finally:
        deadlines.stop(task)
    scope.setdefault("state", {})["body_complete"] = True
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
