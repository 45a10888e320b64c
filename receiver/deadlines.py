"""Time limits on reading request bodies, kept by one sweep instead of a timer per request."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("afterimage.receiver")
SWEEP_SECONDS = 0.25


class BodyDeadlines:
    """Cancels the body reads that outlast `timeout` seconds (to within `SWEEP_SECONDS`).

    A timer per request (`asyncio.timeout`) cost about 3.5 µs of a callback's ~65 µs of CPU
    under load; here a read costs a dict entry, and `run` (started by the app's lifespan) looks
    at them all four times a second.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()

    def start(self) -> asyncio.Task[Any]:
        """Watch the current task's read; returns the task, for `expired` and `stop`."""
        task = asyncio.current_task()
        assert task is not None
        self._reading[task] = task.get_loop().time() + self.timeout
        return task

    def stop(self, task: asyncio.Task[Any]) -> None:
        self._reading.pop(task, None)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether the cancellation `task` is seeing is ours; if so it is taken back."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                self._sweep(loop.time())
            except Exception:  # a bug here must not leave bodies without a time limit
                log.exception("body deadlines: unexpected error in the sweep; going on")

    def _sweep(self, now: float) -> None:
        late = [task for task, deadline in self._reading.items() if deadline <= now]
        for task in late:
            del self._reading[task]
            self._expired.add(task)
            task.cancel()
