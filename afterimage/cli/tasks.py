"""Commands for clients and operators: callback-url, track, status, tasks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from afterimage import operations, redis_client
from afterimage.cli.base import BadUsage, command, effective_settings, emit, need_redis
from afterimage.errors import AfterimageError, ConfigError, InvalidRequestError
from afterimage.ledger import AsyncLedger, Ledger
from afterimage.models import Task, TaskState
from afterimage.operations import MAX_REPLAY_LIMIT, REPLAY_LIMIT, REPLAYABLE_STATES
from afterimage.providers import adapter
from afterimage.retention import archived_task
from afterimage.storage import open_store
from afterimage.tokens import callback_url as make_callback_url
from afterimage.tokens import webhook_secret

T = TypeVar("T")


def ledger() -> Ledger:
    settings = effective_settings()
    need_redis(settings)
    return Ledger(redis_client.connect(settings))


def on_ledger(operation: Callable[[AsyncLedger], Awaitable[T]]) -> T:
    """Run one of afterimage.operations against the configured Redis; its input errors are
    bad usage (exit status 2)."""
    settings = effective_settings()
    need_redis(settings)

    async def run() -> T:
        client = redis_client.connect_async(settings)
        try:
            return await operation(AsyncLedger(client))
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except InvalidRequestError as exc:
        raise BadUsage(str(exc)) from None


@command("callback-url")
@click.argument("provider")
@click.option("--webhook-secret", "secret", is_flag=True,
              help="Print the secret PROVIDER must echo in X-Webhook-Secret (bfl) instead.")
def callback_url(provider: str, secret: bool) -> None:
    """Print the callback URL to give PROVIDER."""
    chosen = adapter(provider)
    if not chosen.has_callbacks:
        raise BadUsage(f"{chosen.name} never calls back, so it has no callback URL: afterimage "
                       f"polls it (track a task with `afterimage track {chosen.name} TASK_ID`, "
                       f"or submit through afterimage)")
    settings = effective_settings()
    if not settings.secrets:
        raise ConfigError("AFTERIMAGE_SECRET is not set (and no `afterimage up` data dir has one)")
    if secret:
        if not chosen.hands_out_secret:
            raise BadUsage(f"{chosen.name} is given no webhook secret")
        click.echo(webhook_secret(settings.secrets[0], chosen.name))
        return
    click.echo(make_callback_url(settings.public_url, settings.secrets[0], chosen.name))


@command("track")
@click.argument("provider")
@click.argument("task_id")
@click.option("--metadata", default="{}", help="JSON object kept with the task.")
@click.option("--model", help="The model or app the task runs on (fal: its app id).")
@click.option("--status-url", help="Where the provider polls the task (bfl: its polling_url).")
def track(provider: str, task_id: str, metadata: str, model: str | None,
          status_url: str | None) -> None:
    """Start tracking a task submitted elsewhere: the poller fetches its result."""
    provider = adapter(provider).name  # an unknown provider is bad usage before Redis is needed
    try:
        meta = json.loads(metadata)
    except ValueError:
        raise click.BadParameter("not JSON", param_hint="--metadata") from None
    settings = effective_settings()
    # The bucket answers for a task that retention removed from Redis: tracked again, it is
    # archived from its manifest at once.
    store = open_store(settings.storage_url, settings.s3_endpoint_url)
    done = on_ledger(lambda led: operations.track(led, settings, provider, task_id, meta,
                                                  model, status_url, store=store))
    t = done.task
    click.echo(f"{'tracking' if done.created else 'already known'}: {t.provider} {t.task_id} "
               f"({t.state})")


def _row(task: Task) -> list[str]:
    """A table row; the error (the last column) whole, code first."""
    err = f"{task.error.get('code', '')}: {task.error.get('message', '')}" if task.error else ""
    return [task.provider, task.task_id, task.state.value, task.updated_at.strftime("%F %T"),
            str(len(task.images)), " ".join(err.split())]


def _table(rows: list[list[str]]) -> str:
    head = ["PROVIDER", "TASK", "STATE", "UPDATED (UTC)", "IMAGES", "ERROR"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [head, *rows])


@command("status")
@click.argument("provider")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="The task as JSON, as the API answers it.")
def status(provider: str, task_id: str, as_json: bool) -> None:
    """Show one task."""
    name = adapter(provider).name  # bad usage is told before Redis is needed
    task = ledger().get(name, task_id)
    if task is None:  # removed by retention? the bucket answers for an archived one
        settings = effective_settings()
        found = archived_task(open_store(settings.storage_url, settings.s3_endpoint_url),
                              name, task_id)
        task = found[0] if found else None
    if task is None:
        raise AfterimageError(f"no task {provider} {task_id}")
    if as_json:
        emit(task.to_json())
        return
    click.echo(_table([_row(task)]))
    for img in task.images:
        click.echo(f"  [{img['index']}] {img['key']}  {img['bytes']} B  {img['width']}x"
                   f"{img['height']}  sha256 {img['sha256'][:16]}…")


@command("tasks")
@click.option("--state", type=click.Choice([s.value for s in TaskState]),
              help="Only tasks in this state.")
@click.option("--provider", help="Only this provider's tasks.")
@click.option("--limit", default=50, show_default=True, help="At most this many tasks.")
@click.option("--json", "as_json", is_flag=True, help="The tasks as JSON (a list).")
def tasks(state: str | None, provider: str | None, limit: int, as_json: bool) -> None:
    """List tasks, most recent first."""
    from afterimage.ledger import list_tasks
    from afterimage.providers import NAMES

    states = [state] if state else [s.value for s in TaskState]
    providers = [adapter(provider).name] if provider else list(NAMES)
    found = on_ledger(lambda led: list_tasks(led, states, providers, limit))
    if as_json:
        out: list[dict[str, Any]] = [t.to_json() for t in found]
        emit(out)
    else:
        click.echo(_table([_row(t) for t in found]))


@command("submit")
@click.argument("provider")
@click.option("--json", "json_file", type=click.File("rb"), required=True,
              help="The provider's own create request ('-' for stdin).")
@click.option("--model", help="fal: the app id; bfl: the model path (their create URLs name it).")
def submit(provider: str, json_file: Any, model: str | None) -> None:
    """Send a create request to PROVIDER with our callback URL, and track the task."""
    from afterimage.provider_api import new_client

    provider = adapter(provider).name
    try:
        body = json.loads(json_file.read())
    except ValueError:
        raise click.BadParameter("not JSON", param_hint="--json") from None
    settings = effective_settings()
    with new_client() as client:
        done = on_ledger(lambda led: operations.submit(led, settings, client, provider, body,
                                                       model))
    emit({"task": done.task.to_json(), "provider_response": done.provider_response})


@command("replay")
@click.argument("provider", required=False)
@click.argument("task_id", required=False)
@click.option("--state", type=click.Choice(list(REPLAYABLE_STATES)),
              help="Replay every task in this state.")
@click.option("--provider", "only", help="With --state: only this provider.")
@click.option("--since", metavar="TIME",
              help="With --state: only tasks that failed at or after TIME (RFC 3339 or unix "
              "seconds).")
@click.option("--limit", type=int, metavar="N",
              help=f"With --state: queue at most N tasks (default {REPLAY_LIMIT}, at most "
              f"{MAX_REPLAY_LIMIT}).")
def replay(provider: str | None, task_id: str | None, state: str | None, only: str | None,
           since: str | None, limit: int | None) -> None:
    """Queue failed tasks again: one (PROVIDER TASK_ID) or all in a state (--state)."""
    if state is None and not (provider and task_id):
        raise click.UsageError("give PROVIDER TASK_ID, or --state archive_failed")
    if state is not None and (provider or task_id):
        raise click.UsageError("--state replays many tasks; give no PROVIDER TASK_ID with it")
    if state is None:
        assert provider and task_id
        one, tid = adapter(provider).name, task_id
        done = on_ledger(lambda led: operations.replay_one(led, one, tid))
        if done.outcome == "queued":
            click.echo(f"queued: {done.task.provider} {tid}")
        else:
            click.echo(f"{done.task.provider} {tid}: {done.message}")
        return
    many, only = state, adapter(only).name if only else None
    queued = on_ledger(lambda led: operations.replay_many(led, many, only, since, limit))
    for p, t in queued:
        click.echo(f"queued: {p} {t}")
    click.echo(f"{len(queued)} task(s) queued")
