"""create_app(settings): literal routes, error handlers, and a lifespan that owns the Redis pool."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afterimage import provider_api, redis_client
from afterimage.errors import AfterimageError
from afterimage.ledger import AsyncLedger
from afterimage.settings import Settings
from receiver import api, metrics, operate, ops, session
from receiver.callbacks import Callbacks
from receiver.errors import ClientGone, answer, error_response
from receiver.runtime import Runtime, runtime


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    rt = runtime(request)
    checks: dict[str, str] = {}
    try:
        await rt.ledger.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    store = request.app.state.store
    if store is not None:
        try:
            await run_in_threadpool(store.ping)
            checks["storage"] = "ok"
        except Exception as exc:
            checks["storage"] = f"error: {exc}"
    ready = all(v == "ok" for v in checks.values())
    if not ready:
        return error_response(503, "not_ready", "; ".join(f"{k}: {v}" for k, v in checks.items()))
    return JSONResponse({"status": "ready", "checks": checks})


def create_app(settings: Settings, *, check_storage: bool = True) -> Callbacks:
    """The receiver app: callbacks answered by `Callbacks` in front, every other route by
    Starlette. Redis is connected in the lifespan, never at import time."""
    settings.require_receiver_secrets()
    if settings.redis_url is None:
        raise AfterimageError("AFTERIMAGE_REDIS_URL is not set")
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = redis_client.connect_async(settings, max_connections=256)
        ledger = AsyncLedger(client, settings.redis_min_replicas)
        rt = app.state.runtime = Runtime(settings, ledger)
        app.state.store = None
        app.state.http = provider_api.new_client()
        if check_storage:
            from afterimage.storage import open_store

            app.state.store = open_store(settings.storage_url, settings.s3_endpoint_url)
        chores = [asyncio.create_task(metrics.flush_forever(rt)),
                  asyncio.create_task(rt.deadlines.run())]
        try:
            yield
        finally:
            for chore in chores:
                chore.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await chore
            with contextlib.suppress(*metrics.REDIS_ERRORS):  # the counts are lost, not the app
                await metrics.flush(rt)
            app.state.http.close()
            await client.aclose()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics.metrics),
        Route("/ops", ops.page),
        Route("/ops/ops.css", ops.stylesheet),
        Route("/ops/login", session.login, methods=["POST"]),
        Route("/ops/logout", session.logout, methods=["POST"]),
        Route("/ops/replay", ops.replay, methods=["POST"]),
        Route("/ops/objects/{key:path}", ops.stored_object),
        Route("/v1/providers/{provider}/callback-url", api.get_callback_url),
        Route("/v1/tasks", api.track_task, methods=["POST"]),
        Route("/v1/tasks", api.get_tasks, methods=["GET"]),
        Route("/v1/tasks/{provider}/{task_id:path}/replay", operate.replay_task, methods=["POST"]),
        Route("/v1/tasks/{provider}/{task_id:path}", api.get_task, methods=["GET"]),
        Route("/v1/replay", operate.replay_many, methods=["POST"]),
        Route("/v1/providers/{provider}/generations", operate.submit, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        # one handler and one table (receiver/errors.py); the bases are named apart because
        # a handler for Exception alone runs in Starlette's outermost middleware, which
        # re-raises what it answered
        exception_handlers={cls: answer for cls in (AfterimageError, ClientGone, HTTPException,
                                                    Exception)},
    )
    app.router.redirect_slashes = False  # an unknown path is a JSON 404, never a redirect
    return Callbacks(app)


def app_from_env() -> Callbacks:
    """Factory for `uvicorn --factory` (one app per uvicorn worker process)."""
    from afterimage.logs import setup_logging

    settings = Settings.from_env()
    setup_logging(settings.log_level, settings.secret_values())
    app = create_app(settings)
    settle_gc()
    return app


def settle_gc() -> None:
    """Keep what the process has made so far (modules, the app) out of every collection, and
    collect young objects less often. A full collection walked all of it, pausing requests for
    40 ms (the receiver's p99), and with 64 callbacks in flight the default young threshold
    (700 allocations) collected every few requests: together 13% of the CPU under load."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
