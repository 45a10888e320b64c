"""Commands that run afterimage's processes: up, receiver, worker, poller."""

from __future__ import annotations

import logging
import os
import sys

import click

from afterimage import embedded
from afterimage.cli.base import command, effective_settings, need_redis
from afterimage.errors import StorageError
from afterimage.logs import log_config, setup_logging
from afterimage.providers import ADAPTERS
from afterimage.settings import Settings
from afterimage.storage import open_store
from afterimage.storage.probe import check_put_once
from afterimage.supervisor import exec_supervisor, stop_pid, watch_parent
from afterimage.tokens import callback_url

log = logging.getLogger("afterimage.receiver")


@command("up")
@click.option("--workers", default=2, show_default=True, help="Archive worker processes.")
@click.option("--poller/--no-poller", default=True, show_default=True,
              help="Run the fallback poller too (--no-poller when another machine runs it).")
def up(workers: int, poller: bool) -> None:
    """Everything in one command: Redis (embedded unless configured), receiver, workers, poller."""
    settings = Settings.from_env()
    setup_logging(settings.log_level, settings.secret_values())
    check_store(settings)
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    kept = embedded.load_or_create_secrets(data)
    env = dict(os.environ)
    env.setdefault("AFTERIMAGE_SECRET", kept["secret"])
    env.setdefault("AFTERIMAGE_API_TOKEN", kept["api_token"])
    env["AFTERIMAGE_DATA_DIR"] = str(data)
    env["AFTERIMAGE_STORAGE_URL"] = settings.storage_url
    redis_proc = None
    if settings.redis_url is None:
        redis_proc = embedded.start_redis(data)
        env["AFTERIMAGE_REDIS_URL"] = embedded.redis_url(data)
    final = Settings.from_env(env)
    setup_logging(final.log_level, final.secret_values())
    children = [["receiver"]]
    children += [["worker", "--name", f"up-{os.getpid()}-{i}"] for i in range(workers)]
    children += [["poller"]] if poller else []
    click.echo(f"afterimage up — data in {data}, archive at {final.storage_url}")
    show_secrets(settings, final)
    scheme = "https" if final.tls_cert_file else "http"
    click.echo(f"  receiver on {scheme}://{final.host}:{final.port} — Ctrl-C stops everything")
    try:
        exec_supervisor(env, children, redis_proc.pid if redis_proc else None, final.log_level)
    except OSError:
        if redis_proc is not None:
            stop_pid(redis_proc.pid)
        raise


def show_secrets(given: Settings, final: Settings) -> None:
    """The API token and callback URLs `up` made itself are shown on a terminal, never in a
    log: not when they came from the environment, and not when the output is not a terminal."""
    terminal = sys.stdout.isatty()
    kept = final.data_dir / "secrets.json"
    if given.api_token is not None:
        click.echo("  API token: the one in AFTERIMAGE_API_TOKEN")
    elif terminal:
        click.echo(f"  API token: {final.api_token}")
    else:
        click.echo(f"  API token: kept in {kept} (shown only on a terminal)")
    callers = [name for name, adapter in ADAPTERS.items() if adapter.has_callbacks]
    if not given.secrets and terminal:
        for name in callers:
            click.echo(f"  {name} callback URL: "
                       f"{callback_url(final.public_url, final.secrets[0], name)}")
    else:
        click.echo(f"  callback URLs: afterimage callback-url {'|'.join(callers)}")


def check_store(settings: Settings) -> None:
    """Refuse (ConfigError) a store that overwrites. One that cannot be reached yet is checked
    before a worker's first write instead (afterimage.storage.probe.CheckedStore)."""
    try:
        check_put_once(open_store(settings.storage_url, settings.s3_endpoint_url))
    except StorageError as exc:
        logging.getLogger("afterimage.storage").warning(
            "storage: cannot check the store yet (%s); it is checked before the first write",
            exc, extra={"event": "storage_unchecked"})


@command("receiver")
@click.option("--workers", default=1, show_default=True, help="uvicorn worker processes.")
def receiver(workers: int) -> None:
    """Run the HTTP receiver (needs AFTERIMAGE_SECRET and AFTERIMAGE_API_TOKEN)."""
    import uvicorn

    settings = Settings.from_env()
    settings.require_receiver_secrets()
    need_redis(settings)
    level, secrets = settings.log_level, settings.secret_values()
    setup_logging(level, secrets)
    for warning in [*settings.https_warnings(), *settings.signature_warnings()]:
        log.warning(warning)
    watch_parent()
    cert, key = settings.tls_cert_file, settings.tls_key_file
    uvicorn.run(
        "receiver.app:app_from_env", factory=True, host=settings.host, port=settings.port,
        workers=workers, log_config=log_config(level, secrets),
        log_level="debug" if level == "DEBUG" else "warning", access_log=level == "DEBUG",
        ssl_certfile=str(cert) if cert else None, ssl_keyfile=str(key) if key else None,
        # X-Forwarded-Proto/-For believed only from the proxies named (uvicorn would believe
        # 127.0.0.1, or $FORWARDED_ALLOW_IPS, by default)
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips or "",
        timeout_keep_alive=10,
        limit_concurrency=4096, h11_max_incomplete_event_size=64 * 1024,
        ws="none",  # no WebSocket routes: never load a WebSocket implementation
    )


@command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--name", default=None, help="Worker name (unique per worker).")
def worker(burst: bool, name: str | None) -> None:
    """Run an archive worker (and its dispatcher)."""
    from worker.runner import run_worker

    settings = effective_settings()
    setup_logging(settings.log_level, settings.secret_values())
    need_redis(settings)
    watch_parent()
    check_store(settings)
    run_worker(settings, burst=burst, name=name)


@command("poller")
def poller() -> None:
    """Run the fallback poller (several may run at once, on several machines)."""
    import signal
    import threading

    from worker.poller import run_poller

    settings = effective_settings()
    setup_logging(settings.log_level, settings.secret_values())
    need_redis(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    watch_parent()
    run_poller(settings, stop)
