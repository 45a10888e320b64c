"""Reading a request body under a byte cap and a time limit, from the raw ASGI messages."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import Receive, Scope

from receiver.deadlines import BodyDeadlines
from receiver.errors import ApiError, ClientGone
from receiver.runtime import runtime

MAX_CALLBACK_BYTES = 1024 * 1024


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
