"""`afterimage worker`: an RQ worker plus the dispatcher that feeds it."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading

import redis
from rq import Queue
from rq.exceptions import StopRequested

from afterimage import redis_client
from afterimage.keys import QUEUES
from afterimage.settings import Settings
from worker.context import Context, install
from worker.dispatcher import BLOCK_SECONDS, Dispatcher, run_forever
from worker.memory import bound_malloc
from worker.notify import run_delivery
from worker.recovery import MAINTENANCE_INTERVAL, WORKER_TTL, run_recovery
from worker.rq_worker import ArchiveWorker

log = logging.getLogger("afterimage.worker")


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    """Work until stopped (SIGTERM/SIGINT finish the job in hand); True if work was done."""
    bound_malloc()
    ctx = Context(settings)
    install(ctx)
    queues = [Queue(q, connection=ctx.redis) for q in QUEUES]
    # RQ's own connection blocks in BLPOP/BLMOVE for its dequeue timeout, the dispatcher's in
    # XREADGROUP: each gets a read timeout longer than its block.
    rq_redis = redis_client.connect_blocking(settings, max(1, WORKER_TTL - 15))
    rq_queues = [Queue(q, connection=rq_redis) for q in QUEUES]
    stop = threading.Event()
    dispatcher = Dispatcher(redis_client.connect_blocking(settings, BLOCK_SECONDS), queues[1],
                            queues[0], settings.archive_retries, name or "")
    threads = [
        threading.Thread(target=run_forever, args=(dispatcher, stop), daemon=True,
                         name="dispatcher"),
        threading.Thread(target=run_recovery, args=(ctx.redis, queues, stop), daemon=True,
                         name="recovery"),
    ]
    if settings.notify_url:
        threads.append(threading.Thread(target=run_delivery, args=(ctx, dispatcher.name, stop),
                                        daemon=True, name="events"))
    for thread in threads:
        thread.start()
    worked = False
    try:
        for attempt in itertools.count():
            try:
                worker = ArchiveWorker(rq_queues, connection=rq_redis,
                                       name=_rq_name(name, attempt),
                                       maintenance_interval=MAINTENANCE_INTERVAL,
                                       worker_ttl=WORKER_TTL, stop=stop,
                                       slots=settings.archive_concurrency)
                worked |= bool(worker.work(burst=burst, logging_level="WARNING"))
            except redis.RedisError as exc:
                log.warning("worker: Redis failed (%s)", exc)
            if burst or stop.is_set():
                break
            # RQ quits on a Redis error in the middle of a job; wait Redis out and go on.
            _wait_for_redis(ctx.redis, stop)
        return worked
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


def _rq_name(name: str | None, attempt: int) -> str:
    """Unique per process and attempt: RQ refuses a name whose holder has not yet expired,
    and a killed worker's stays registered for a minute or more."""
    base = f"{name or socket.gethostname()}-{os.getpid()}"
    return f"{base}-{attempt}" if attempt else base


def _wait_for_redis(client: redis.Redis, stop: threading.Event) -> None:
    while not stop.is_set():
        # A signal runs RQ's handler in this thread, which may raise StopRequested or fail
        # on Redis: either way `stop` is set by then.
        try:
            if client.ping():
                return
        except redis.RedisError:
            log.warning("worker: waiting for Redis")
        except StopRequested:
            return
        with contextlib.suppress(StopRequested, redis.RedisError):
            stop.wait(1.0)
