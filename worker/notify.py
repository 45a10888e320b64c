"""Completion events: after a task's manifest is written, POST `afterimage.task.archived` to
AFTERIMAGE_NOTIFY_URL, signed per Standard Webhooks (afterimage.webhooks).

Each event is its own ordinary RQ job on the `afterimage-notify` queue, enqueued once the task
is archived, so a slow or failing consumer never delays or fails an archive. An attempt that
gets no answer or anything but 2xx (redirects are never followed) is retried by RQ with
backoff; the event id and body stay the same on every attempt, the timestamp and signature are
made afresh. The URL is the operator's own, so it is not held to the download SSRF rules.
"""

from __future__ import annotations

import logging
import time

import httpx
import redis
from rq import Queue, Retry, get_current_job

from afterimage.errors import NotifyError
from afterimage.metrics import NOTIFICATIONS
from afterimage.models import Task
from afterimage.webhooks import archived_event, headers, message_id, secret_key
from worker.context import Context, context

log = logging.getLogger("afterimage.notify")
QUEUE = "afterimage-notify"
FUNC = "worker.notify.deliver"
BACKOFF = [2, 10, 60, 300, 1800, 3600, 3 * 3600, 6 * 3600]  # about 11 hours in all


def enqueue(ctx: Context, task: Task, manifest: bytes, manifest_key: str) -> None:
    """Queue the event for a task just archived (nothing when notifications are off).

    Never raises: the archive is done whatever happens to its announcement.
    """
    if not ctx.settings.notify_url:
        return
    msg_id = message_id(task.provider, task.task_id, task.generation)
    body = archived_event(manifest, manifest_key).decode()
    where = {"event": "notify_queued", "provider": task.provider, "task_id": task.task_id}
    try:
        Queue(QUEUE, connection=ctx.redis).enqueue(
            FUNC, task.provider, task.task_id, msg_id, body,
            job_id=msg_id.replace("msg_", "notify_"), retry=Retry(len(BACKOFF), BACKOFF),
            job_timeout=60, result_ttl=3600, failure_ttl=7 * 86400,
            description=f"notify {task.provider} {task.task_id}",
        )
    except redis.RedisError as exc:
        log.error("notify %s %s: event not queued: %s", task.provider, task.task_id, exc,
                  extra={**where, "event": "notify_not_queued"})
        return
    log.info("notify %s %s: event %s queued", task.provider, task.task_id, msg_id, extra=where)


def deliver(provider: str, task_id: str, msg_id: str, body: str) -> str:
    """RQ entry point: one delivery attempt; raises NotifyError so that RQ retries."""
    ctx = context()
    settings = ctx.settings
    where = {"provider": provider, "task_id": task_id}
    if not settings.notify_url or settings.notify_secret is None:
        log.warning("notify %s %s: notifications are off now; event %s dropped", provider,
                    task_id, msg_id, extra={**where, "event": "notify_dropped"})
        return "dropped"
    data = body.encode()
    sent = headers(secret_key(settings.notify_secret), msg_id, int(time.time()), data)
    try:
        _post(ctx.notify_http, settings.notify_url, data, sent)
    except NotifyError as exc:
        ctx.tally.add(NOTIFICATIONS, "failed")
        ctx.flush_metrics()
        job = get_current_job()
        then = "will retry" if job and job.retries_left else "giving up"
        log.warning("notify %s %s: %s (%s)", provider, task_id, exc, then,
                    extra={**where, "event": "notify_failed"})
        raise
    ctx.tally.add(NOTIFICATIONS, "delivered")
    ctx.flush_metrics()
    log.info("notify %s %s: event %s delivered", provider, task_id, msg_id,
             extra={**where, "event": "notify_delivered"})
    return "delivered"


def _post(client: httpx.Client, url: str, data: bytes, sent: dict[str, str]) -> None:
    try:
        reply = client.post(url, content=data, headers=sent)
    except httpx.HTTPError as exc:
        raise NotifyError(f"no answer from the notify URL ({type(exc).__name__})") from exc
    if not 200 <= reply.status_code < 300:
        raise NotifyError(f"the notify URL answered {reply.status_code}")
