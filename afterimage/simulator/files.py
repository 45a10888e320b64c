"""The simulator's image host: `/files/{token}/{name}?exp=&sig=`, streamed from memory."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from afterimage.simulator.context import SimContext
from afterimage.simulator.faults import chance
from afterimage.simulator.images import content_type

CHUNK = 256 * 1024
SLOW_CHUNK = 16 * 1024  # with the `slow` fault: small pieces, evenly paced
TRUNCATION_LOG = "ASGI callable returned without completing response."


class _QuietTruncation(logging.Filter):
    """uvicorn logs a short body as an error; here it is the point of the fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != TRUNCATION_LOG


def quiet_truncation_logs() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietTruncation) for f in logger.filters):
        logger.addFilter(_QuietTruncation())


class FileServer:
    """A raw ASGI endpoint, so a truncated body can end the connection early."""

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = self.ctx
        token = scope["path_params"]["token"]
        name = scope["path_params"]["name"]
        now = time.time()
        task = ctx.store.by_token(token)
        if task is None or name not in task.names or task.state(now) != "succeeded":
            await _plain(send, 404, "NoSuchKey: the object does not exist")
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        expires = ctx.signer.check(
            task.path(name), query.get("exp", [""])[0], query.get("sig", [""])[0]
        )
        if expires is None:
            await _plain(send, 403, "AccessDenied: the signature does not match")
            return
        if now >= expires or expires <= task.revoked_before:
            await _plain(send, ctx.config.expired_status, "AccessDenied: the link has expired")
            return
        data = await ctx.images.get(task.image)
        is_get = scope["method"] == "GET"
        faults = ctx.faults.for_provider(task.provider)
        truncated = is_get and chance(faults.truncate)
        if is_get:
            ctx.store.record_download(task, name, truncated)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type(task.image.fmt).encode()),
                    (b"content-length", str(len(data)).encode()),
                    (b"cache-control", b"private, max-age=86400"),
                ],
            }
        )
        if not is_get:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        view = memoryview(data)
        end = len(data) // 2 if truncated else len(data)
        step = SLOW_CHUNK if faults.slow > 0 else CHUNK
        pause = faults.slow * step / max(len(data), 1)
        for start in range(0, end, step):
            if faults.slow > 0:
                await asyncio.sleep(pause)
            stop = min(start + step, end)
            last = stop == len(data)
            await send(
                {
                    "type": "http.response.body",
                    "body": bytes(view[start:stop]),
                    "more_body": not last,
                }
            )
        # A truncated body simply ends here: the server closes the connection short.


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
