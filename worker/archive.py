"""The archive job: confirm the result, stream each image into storage once, manifest last."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from datetime import UTC, datetime
from typing import BinaryIO, cast

from rq import get_current_job

from afterimage import errors
from afterimage.ledger import move_args
from afterimage.manifest import manifest_bytes
from afterimage.metrics import ARCHIVE_JOBS, ARCHIVE_SECONDS, ARCHIVED_BYTES, ARCHIVED_IMAGES
from afterimage.models import ImageRecord, Outcome, ProviderResult, Task, TaskState
from afterimage.provider_api import query_status
from afterimage.retention import archived_task, restore_args
from afterimage.schedule import poll_gap
from worker import notify
from worker.context import Context, context
from worker.download import fetch_image
from worker.spool import Spool

log = logging.getLogger("afterimage.worker")


def archive_task(provider: str, task_id: str, generation: int) -> str:
    """RQ entry point: archive one task's images; returns what happened."""
    ctx = context()
    started = time.monotonic()
    outcome = "error"
    try:
        done = _run(ctx, provider, task_id, generation)
        outcome = done.split(":", 1)[0]
        return done
    except errors.AfterimageError as exc:
        outcome = "retried" if _retrying(exc) else "archive_failed"
        raise
    finally:
        ctx.tally.add(ARCHIVE_JOBS, provider, outcome)
        if outcome == "archived":
            ctx.tally.observe(ARCHIVE_SECONDS, provider, value=time.monotonic() - started)
        ctx.flush_metrics()


def _retrying(exc: errors.AfterimageError) -> bool:
    """A transient failure with retries left: RQ runs the job again later."""
    job = get_current_job()
    return getattr(exc, "transient", False) and bool(job and job.retries_left)


def _run(ctx: Context, provider: str, task_id: str, generation: int) -> str:
    task = ctx.ledger.get(provider, task_id)
    if task is None or task.state is not TaskState.QUEUED or task.generation != generation:
        state = task.state.value if task else "missing"
        log.info("archive %s %s gen %d: nothing to do (%s)", provider, task_id, generation, state,
                 extra={"event": "archive_skipped", "provider": provider, "task_id": task_id,
                        "state": state})
        return f"skipped: {state}"
    ctx.ledger.count_attempt(provider, task_id)
    try:
        if (done := _restore(ctx, task)) is not None:
            return done
        return _archive(ctx, task)
    except errors.AfterimageError as exc:
        if _retrying(exc):
            log.warning("archive %s %s: %s (will retry)", provider, task_id, exc,
                        extra={"event": "archive_retry", "provider": provider,
                               "task_id": task_id, "state": "queued"})
            raise
        _end(ctx, task, TaskState.ARCHIVE_FAILED, exc.code, str(exc))
        if getattr(exc, "transient", False):
            raise
        return f"archive_failed: {exc}"


def _restore(ctx: Context, task: Task) -> str | None:
    """A task whose manifest is already in the bucket (a late callback or a replay of a task
    that retention removed from Redis, or a run that stopped after its manifest) is archived
    from the manifest: nothing is downloaded, asked or written. Its completion event is
    recorded again (at least once: a run that stopped after its manifest never sent it)."""
    found = archived_task(ctx.store, task.provider, task.task_id)
    if found is None:
        return None
    stored, manifest = found
    key = ctx.store.key(task.provider, task.task_id, "manifest.json")
    move = ctx.ledger.move(restore_args(stored, "queued", expect_gen=task.generation,
                                        event=notify.event_body(ctx, manifest, key)))
    log.info("archive %s %s: already archived (manifest.json is stored)%s", task.provider,
             task.task_id, "" if move.ok else f" (state had become {move.previous})",
             extra=_where(task, "archived_from_manifest",
                          TaskState.ARCHIVED if move.ok else move.previous))
    return "archived: from its manifest"


def _archive(ctx: Context, task: Task, may_resign: bool = True) -> str:
    urls = task.urls
    result: ProviderResult | None = None
    if task.provider in ctx.settings.api_keys and not task.confirmed:
        result = query_status(ctx.settings, ctx.provider_http, task.provider, task.ref)
        if result.outcome is Outcome.PENDING:
            due = time.time() + poll_gap(ctx.settings, task.provider, 0)
            ctx.ledger.move(move_args(
                task.provider, task.task_id, TaskState.PENDING, allowed="queued",
                expect_gen=task.generation, due_at=due,
            ))
            log.info("archive %s %s: provider says still pending", task.provider, task.task_id,
                     extra=_where(task, "archive_pending", TaskState.PENDING))
            return "pending"
        if result.outcome is Outcome.FAILED:
            _end(ctx, task, TaskState.GENERATION_FAILED, result.error_code or "generation_failed",
                 result.error_message or "the provider says generation failed")
            return "generation_failed"
        urls = result.urls
    if not urls:
        raise errors.ImageRejectedError("no result URLs to archive")
    try:
        images = [_store_image(ctx, task, i, url) for i, url in enumerate(urls)]
    except errors.LinkExpiredError as exc:
        # Links just handed out by a status query are not asked for again.
        return _on_expired_link(ctx, task, urls, exc, may_resign and result is None)
    model = (result.model if result else None) or task.model
    manifest = manifest_bytes(task, images, datetime.now(UTC), model)
    key = ctx.store.key(task.provider, task.task_id, "manifest.json")
    with io.BytesIO(manifest) as body:
        if not ctx.store.put_once(key, body, len(manifest), "application/json", _meta(task, "")):
            manifest = ctx.store.get(key)  # an earlier run's, which consumers already read
    move = ctx.ledger.move(move_args(
        task.provider, task.task_id, TaskState.ARCHIVED, allowed="queued",
        expect_gen=task.generation, event=notify.event_body(ctx, manifest, key), fields={
            "img": json.dumps([img.public() for img in images]), "err": None, "urls": None,
        },
    ))
    log.info("archive %s %s: archived %d image(s)%s", task.provider, task.task_id, len(images),
             "" if move.ok else f" (state had become {move.previous})",
             extra=_where(task, "archived", TaskState.ARCHIVED if move.ok else move.previous))
    return "archived"


def _store_image(ctx: Context, task: Task, index: int, url: str) -> ImageRecord:
    s = ctx.settings
    with Spool(ctx.memory) as sink:
        got = fetch_image(
            url, cast(BinaryIO, sink), max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels,
            allow_cidrs=s.download_allow_cidrs, stall_timeout=s.download_stall_timeout,
            time_limit=s.download_time_limit, client=ctx.downloads,
        )
        key = ctx.store.key(task.provider, task.task_id, f"{index}.{got.ext}")
        sink.seek(0)
        written = ctx.store.put_once(
            key, cast(BinaryIO, sink), got.bytes, got.content_type, _meta(task, got.sha256),
            sha256=got.sha256,
        )
    record = ImageRecord(index, key, got.bytes, got.sha256, got.content_type, got.width,
                         got.height, got.source_url)
    if written:
        ctx.tally.add(ARCHIVED_BYTES, task.provider, value=got.bytes)
        ctx.tally.add(ARCHIVED_IMAGES, task.provider)
    else:
        log.info("archive %s %s: %s was already stored", task.provider, task.task_id, key,
                 extra=_where(task, "image_already_stored"))
        info = ctx.store.head(key)
        if info is not None and info.metadata.get("afterimage-sha256") not in (None, got.sha256):
            record = ImageRecord(index, key, info.size, info.metadata["afterimage-sha256"],
                                 info.content_type, got.width, got.height, got.source_url)
    return record


def _on_expired_link(
    ctx: Context, task: Task, urls: tuple[str, ...], exc: errors.LinkExpiredError, may_resign: bool
) -> str:
    """A dead link: ask for fresh ones (some providers re-sign); otherwise the task expired."""
    if may_resign and task.provider in ctx.settings.api_keys:
        fresh = query_status(ctx.settings, ctx.provider_http, task.provider, task.ref)
        if fresh.outcome is Outcome.SUCCEEDED and fresh.urls != urls:
            log.info("archive %s %s: links re-signed, retrying", task.provider, task.task_id,
                     extra=_where(task, "links_resigned"))
            fresh_task = dataclasses.replace(task, urls=fresh.urls, confirmed=True)
            return _archive(ctx, fresh_task, may_resign=False)
    _end(ctx, task, TaskState.EXPIRED, exc.code, f"links expired and no fresh ones: {exc}")
    return "expired"


def _end(ctx: Context, task: Task, state: TaskState, code: str, message: str) -> None:
    err = json.dumps({"code": code, "message": message})
    move = ctx.ledger.move(move_args(
        task.provider, task.task_id, state, allowed="queued", expect_gen=task.generation,
        fields={"err": err},
    ))
    log.warning("archive %s %s: %s (%s: %s)%s", task.provider, task.task_id, state.value, code,
                message, "" if move.ok else f" — not applied, state is {move.previous}",
                extra=_where(task, state.value, state if move.ok else move.previous))


def _where(task: Task, event: str, state: str | None = None) -> dict[str, str | None]:
    """The structured fields of a log line about `task`."""
    return {"event": event, "provider": task.provider, "task_id": task.task_id, "state": state,
            "previous": task.state.value}


def _meta(task: Task, sha256: str) -> dict[str, str]:
    meta = {"afterimage-provider": task.provider, "afterimage-task-id": task.task_id}
    if sha256:
        meta["afterimage-sha256"] = sha256
    return meta
