"""Callback delivery with httpx from background asyncio tasks, with the fault switches."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import httpx

from afterimage.simulator.faults import chance
from afterimage.simulator.state import SimTask

if TYPE_CHECKING:
    from afterimage.simulator.context import SimContext

log = logging.getLogger("afterimage.simulator")


class CallbackDispatcher:
    """Sends each task's callback when it completes: dropped, late or duplicated on request."""

    def __init__(self, ctx: SimContext, client: httpx.AsyncClient) -> None:
        self.ctx = ctx
        self.client = client

    def schedule(self, task: SimTask) -> None:
        """(Re)arm the task's completion timer; must run on the event loop."""
        if task.timer is not None:
            task.timer.cancel()
        loop = asyncio.get_running_loop()
        task.timer = loop.call_later(max(0.0, task.ready_at - time.time()), self._fire, task)

    def _fire(self, task: SimTask) -> None:
        task.timer = None
        self.ctx.spawn(self.deliver(task))

    async def deliver(self, task: SimTask) -> None:
        """Decide the faults for this callback, then send every copy of it."""
        ctx = self.ctx
        faults = ctx.faults.for_provider(task.provider)
        if chance(faults.drop):
            ctx.store.callback_event(task, {"at": time.time(), "dropped": True}, "dropped")
            return
        if chance(faults.late):
            await asyncio.sleep(faults.late_delay)
        copies = faults.copies if chance(faults.duplicate) else 1
        api = ctx.apis[task.provider]
        # The loop's timer may fire a hair before ready_at (monotonic vs wall clock): the
        # completion callback describes the completed task all the same.
        body = json.dumps(api.callback_body(task, max(time.time(), task.ready_at))).encode()
        retries = ctx.config.evolink_retry_delays if api.retries_callbacks else ()
        await asyncio.gather(*(self._send(task, body, copy, retries) for copy in range(copies)))

    async def _send(
        self, task: SimTask, body: bytes, copy: int, retries: tuple[float, ...]
    ) -> None:
        ctx = self.ctx
        api = ctx.apis[task.provider]
        url = task.callback_url
        assert url is not None
        for attempt in range(len(retries) + 1):
            headers = {
                "content-type": "application/json",
                "user-agent": f"afterimage-simulator ({task.provider})",
                **api.callback_headers(task, time.time(), body),
            }
            ctx.store.callback_event(task, {}, "attempt")
            event: dict[str, Any] = {"at": time.time(), "copy": copy, "attempt": attempt}
            try:
                reply = await self.client.post(
                    url, content=body, headers=headers, timeout=ctx.config.callback_timeout
                )
            except httpx.HTTPError as exc:
                event["error"] = f"{type(exc).__name__}: {exc}"
            else:
                event["status"] = reply.status_code
                if reply.is_success:
                    ctx.store.callback_event(task, event, "delivered")
                    return
            ctx.store.callback_event(task, event, "failed")
            log.info("callback for %s/%s not delivered: %s", task.provider, task.id, event)
            if attempt < len(retries):
                await asyncio.sleep(retries[attempt])
