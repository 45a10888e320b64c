"""`create_app(config)`: the nine providers, the image host and `/_sim/` on one Starlette app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from afterimage.simulator.apis import build_apis
from afterimage.simulator.callbacks import CallbackDispatcher
from afterimage.simulator.config import PROVIDERS, SimConfig
from afterimage.simulator.context import SimContext
from afterimage.simulator.control import Control
from afterimage.simulator.files import FileServer, quiet_truncation_logs


def create_app(config: SimConfig) -> Starlette:
    """The simulator as an ASGI app; `app.state.sim` is its SimContext."""
    ctx = SimContext(config)
    apis = build_apis(ctx)

    async def index(request: Request) -> Response:
        return JSONResponse(
            {
                "service": "afterimage simulator",
                "providers": {p: ctx.base_url(p) for p in PROVIDERS},
                "control": f"{ctx.public_url}/_sim",
            }
        )

    routes: list[BaseRoute] = [Route("/", index, methods=["GET"])]
    for api in apis.values():
        routes.extend(api.routes())
    routes.append(Route("/files/{token}/{name}", FileServer(ctx), methods=["GET", "HEAD"]))
    routes.extend(Control(ctx).routes())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(limits=limits, follow_redirects=False) as client:
            ctx.callbacks = CallbackDispatcher(ctx, client)
            try:
                yield
            finally:
                await ctx.aclose()
                ctx.callbacks = None

    quiet_truncation_logs()
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sim = ctx
    return app
