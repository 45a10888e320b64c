"""Completion events: POST `afterimage.task.archived` to AFTERIMAGE_NOTIFY_URL, signed per
Standard Webhooks (afterimage.webhooks), at least once.

The event is recorded by the very script call that moves the task to `archived`
(lua/transition.lua adds it to the `ai:events` stream), so no crash can archive a task without
its event. Every worker runs the `events` loop (afterimage.components): it reads the stream
with a consumer group, one event at a time, POSTs it, and only then acknowledges and deletes
it. A worker killed before that leaves the event pending; another takes it over once it has
been idle CLAIM_IDLE_MS. An attempt that gets no answer or anything but 2xx (redirects are
never followed) moves the event, in one transaction, to `ai:events:later` until its next try
(BACKOFF), when lua/events_due.lua puts it back in the stream; after the last it is dropped
with an error line. The event id and body stay the same on every attempt, the timestamp and
signature are made afresh. The URL is the operator's own, so it is not held to the download
SSRF rules.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from importlib import resources
from typing import Any, cast

import httpx
import redis
from rq import get_current_job

from afterimage import keys
from afterimage.components import run_loop
from afterimage.errors import NotifyError
from afterimage.metrics import NOTIFICATIONS
from afterimage.webhooks import archived_event, headers, message_id, secret_key
from worker.context import Context, context
from worker.dispatcher import lost_group

log = logging.getLogger("afterimage.notify")
QUEUE = "afterimage-notify"  # where events waited before they were recorded with the archive
DUE = resources.files("afterimage").joinpath("lua/events_due.lua").read_text()
BACKOFF = [2, 10, 60, 300, 1800, 3600, 3 * 3600, 6 * 3600]  # about 11 hours in all
CLAIM_IDLE_MS = 30_000  # an attempt gets about 10 s; one pending far longer lost its worker
PROMOTE_MAX = 100
Entry = tuple[bytes, dict[bytes, bytes]]


def event_body(ctx: Context, manifest: bytes, manifest_key: str) -> str | None:
    """The event to record with the archiving transition (None when notifications are off)."""
    if not ctx.settings.notify_url:
        return None
    return archived_event(manifest, manifest_key).decode()


class Delivery:
    """The `events` loop's state: one call of `run_once` is one round."""

    def __init__(self, ctx: Context, name: str) -> None:
        self.ctx = ctx
        self.redis = ctx.redis
        self.name = name
        self._due = self.redis.register_script(DUE)
        self._grouped = False
        self._claim_from = "0-0"

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(keys.EVENTS, keys.EVENTS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._grouped = True
        self._claim_from = "0-0"

    def run_once(self, block_ms: int = 1000) -> int:
        """Deliver one event if there is one (waiting up to `block_ms` for it)."""
        if not self._grouped:
            self.ensure_group()
        try:
            return self._run_once(block_ms)
        except redis.ResponseError as exc:
            if not lost_group(exc):
                raise
            log.warning("events: the events stream or its group is gone (%s); making them "
                        "again", exc, extra={"event": "events_group_recreated"})
            self.ensure_group()
            return 0

    def _run_once(self, block_ms: int) -> int:
        self._due(keys=[keys.EVENTS_LATER, keys.EVENTS], args=[time.time(), PROMOTE_MAX])
        reply: Any = self.redis.xreadgroup(keys.EVENTS_GROUP, self.name, {keys.EVENTS: ">"},
                                           count=1, block=block_ms)
        entries: list[Entry] = [e for _, batch in (reply or []) for e in batch]
        if not entries:  # events a dead worker was delivering
            claimed: Any = self.redis.xautoclaim(keys.EVENTS, keys.EVENTS_GROUP, self.name,
                                                 CLAIM_IDLE_MS, start_id=self._claim_from,
                                                 count=1)
            self._claim_from, entries = claimed[0], cast(list[Entry], claimed[1])
        for entry_id, fields in entries:
            self._deliver(entry_id, fields)
        return len(entries)

    def _deliver(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            provider, task_id = fields[b"p"].decode(), fields[b"id"].decode()
            msg_id = message_id(provider, task_id, int(fields[b"g"]))
            body, tried = fields[b"e"], int(fields.get(b"n", b"0"))
        except (KeyError, ValueError) as exc:  # not written by lua/transition.lua
            log.error("events: entry %s is malformed (%s: %s); dropped", entry_id.decode(),
                      type(exc).__name__, exc, extra={"event": "notify_malformed"})
            self._done(entry_id)
            return
        where = {"provider": provider, "task_id": task_id}
        try:
            post(self.ctx, msg_id, body)
        except NotifyError as exc:
            self.ctx.tally.add(NOTIFICATIONS, "failed")
            self.ctx.flush_metrics()
            if tried < len(BACKOFF):
                later = {k.decode(): v.decode() for k, v in fields.items()}
                later["n"] = str(tried + 1)
                self._done(entry_id, later, time.time() + BACKOFF[tried])
                log.warning("notify %s %s: %s (will retry in %d s)", provider, task_id, exc,
                            BACKOFF[tried], extra={**where, "event": "notify_failed"})
            else:
                self._done(entry_id)
                log.error("notify %s %s: %s; giving up on event %s after %d attempts",
                          provider, task_id, exc, msg_id, tried + 1,
                          extra={**where, "event": "notify_dropped"})
            return
        self._done(entry_id)
        self.ctx.tally.add(NOTIFICATIONS, "delivered")
        self.ctx.flush_metrics()
        log.info("notify %s %s: event %s delivered", provider, task_id, msg_id,
                 extra={**where, "event": "notify_delivered"})

    def _done(self, entry_id: bytes, later: dict[str, str] | None = None,
              when: float = 0.0) -> None:
        """Acknowledge and delete the entry; with `later`, keep the event for its next try,
        in the same transaction."""
        pipe = self.redis.pipeline(transaction=True)
        if later is not None:
            pipe.zadd(keys.EVENTS_LATER, {json.dumps([x for kv in later.items() for x in kv]):
                                          when})
        pipe.xack(keys.EVENTS, keys.EVENTS_GROUP, entry_id)
        pipe.xdel(keys.EVENTS, entry_id)
        pipe.execute()


def run_delivery(ctx: Context, name: str, stop: threading.Event) -> None:
    """Deliver events until `stop` is set, surviving any error (afterimage.components)."""
    delivery = Delivery(ctx, name)

    def step() -> float:
        delivery.run_once()
        return 0.0

    run_loop("events", ctx.redis, step, stop)


def post(ctx: Context, msg_id: str, body: bytes) -> None:
    """One delivery attempt; NotifyError unless the URL answered 2xx."""
    settings = ctx.settings
    if not settings.notify_url or settings.notify_secret is None:
        raise NotifyError("notifications are off (AFTERIMAGE_NOTIFY_URL is not set)")
    sent = headers(secret_key(settings.notify_secret), msg_id, int(time.time()), body)
    try:
        reply = ctx.notify_http.post(settings.notify_url, content=body, headers=sent)
    except httpx.HTTPError as exc:
        raise NotifyError(f"no answer from the notify URL ({type(exc).__name__})") from exc
    if not 200 <= reply.status_code < 300:
        raise NotifyError(f"the notify URL answered {reply.status_code}")


def deliver(provider: str, task_id: str, msg_id: str, body: str) -> str:
    """RQ entry point of the events an earlier version queued as jobs on QUEUE: one attempt,
    retried by RQ as those jobs say."""
    ctx = context()
    where = {"provider": provider, "task_id": task_id}
    try:
        post(ctx, msg_id, body.encode())
    except NotifyError as exc:
        ctx.tally.add(NOTIFICATIONS, "failed")
        ctx.flush_metrics()
        job = get_current_job()
        log.warning("notify %s %s: %s (%s)", provider, task_id, exc,
                    "will retry" if job and job.retries_left else "giving up",
                    extra={**where, "event": "notify_failed"})
        raise
    ctx.tally.add(NOTIFICATIONS, "delivered")
    ctx.flush_metrics()
    log.info("notify %s %s: event %s delivered", provider, task_id, msg_id,
             extra={**where, "event": "notify_delivered"})
    return "delivered"
