"""Reading a request body under a byte cap and a time limit."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from receiver.errors import ApiError
from receiver.runtime import runtime

MAX_CALLBACK_BYTES = 1024 * 1024


async def read_body(request: Request, limit: int = MAX_CALLBACK_BYTES) -> bytes:
    """The body, refused with 413 past `limit` (checked while streaming) and 408 when it takes
    longer than the `callback_read_timeout` setting (AFTERIMAGE_CALLBACK_READ_TIMEOUT)."""
    timeout = runtime(request).settings.callback_read_timeout
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"body over {limit} bytes")
    try:
        async with asyncio.timeout(timeout):
            chunks: list[bytes] = []
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "body_too_large", f"body over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, "body_timeout", f"body not received within {timeout:g} s") from None
    request.state.body_complete = True  # receiver.errors keeps the connection open after this
    return b"".join(chunks)
