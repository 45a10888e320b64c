"""ASGI apps the callback benchmark runs beside the real receiver, and the uvicorn launcher
that serves every one of them with the same options.

    python -m bench.apps MODULE:FACTORY --port P --workers N
"""

from __future__ import annotations

import argparse
import json
import os

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

OK = b'{"code":200,"msg":"success"}'


def bare_app() -> Starlette:
    """Reads the body and answers 200: the ceiling for a Starlette app on this machine."""

    async def callback(request: Request) -> Response:
        await request.body()
        return Response(OK, media_type="application/json")

    return Starlette(routes=[Route("/callbacks/{provider}/{token}", callback, methods=["POST"])])


def enqueue_in_request_app() -> Starlette:
    """The receiver's work plus the RQ job made inside the request (the design the inbox and
    dispatcher replaced): the request-path claim of docs/design.md, measured."""
    from rq import Queue

    from afterimage import redis_client
    from afterimage.manifest import archive_job_id
    from afterimage.settings import Settings
    from receiver import app as receiver_app
    from receiver.callbacks import Callbacks

    settings = Settings.from_env()
    queue = Queue("afterimage", connection=redis_client.connect(settings))

    def enqueue(provider: str, task_id: str) -> None:
        queue.enqueue("worker.archive.archive_task", provider, task_id, 1,
                      job_id=archive_job_id(provider, task_id, 1), job_timeout=600,
                      result_ttl=3600, failure_ttl=7 * 86400)

    wrapper: Callbacks = receiver_app.create_app(settings, check_storage=False)

    class Callback:  # an ASGI app, so that Route passes scope, receive and send through
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            body = await Request(scope, receive).body()

            async def replay() -> dict[str, object]:
                return {"type": "http.request", "body": body, "more_body": False}

            await wrapper(scope, replay, send)
            await run_in_threadpool(enqueue, scope["path"].split("/")[2], json.loads(body)["id"])

    app = wrapper.starlette
    app.router.routes.insert(0, Route("/callbacks/{provider}/{token}", Callback(),
                                      methods=["POST"]))
    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("AFTERIMAGE_LOG_LEVEL", "INFO")
    # The options of `afterimage receiver` (afterimage/cli/run.py), with uvloop and httptools
    # named rather than picked by "auto", for every app alike.
    uvicorn.run(
        args.app, factory=True, host="127.0.0.1", port=args.port, workers=args.workers,
        loop="uvloop", http="httptools", log_level="warning", access_log=False,
        timeout_keep_alive=10, limit_concurrency=4096, h11_max_incomplete_event_size=64 * 1024,
        ws="none",
    )


if __name__ == "__main__":
    main()
