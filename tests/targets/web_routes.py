"""Request tasks that know their route: a Starlette app under uvicorn (h11) and under hypercorn,
and an aiohttp.web app, each with an `/items/{...}` route whose handler waits for an hour, and
three requests to it on each server (`/items/1`, `/items/2`, `/items/3?token=secret`). On
Starlette, a request to `/late/7` waits in a middleware before the app routes it, until a
`route-PID` file lets it through (it notes `late routed` once its handler waits in the
`/late/{number}` route). Signals ready once the nine requests wait in their handlers and the
late one in the middleware. Exits at once when stopped."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import uvicorn
from aiohttp import web
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from target_kit import (
    WORKDIR,
    free_port,
    get,
    note,
    send,
    signal_ready,
    stop_requested,
    until_stopped,
    wait_for_port,
)

waiting: list[str] = []
gate = asyncio.Event()


async def starlette_item(request: Request) -> PlainTextResponse:
    waiting.append("starlette")
    await asyncio.sleep(3600)
    return PlainTextResponse("late")


async def starlette_late(request: Request) -> PlainTextResponse:
    note("late routed")
    await asyncio.sleep(3600)
    return PlainTextResponse("late")


class GateMiddleware:
    """Holds requests to /late/... before the app routes them, until the gate opens."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/late/"):
            waiting.append("gate")
            await gate.wait()
        await self.app(scope, receive, send)


async def aiohttp_item(request: web.Request) -> web.Response:
    waiting.append("aiohttp")
    await asyncio.sleep(3600)
    return web.Response(text="late")


async def main() -> None:
    routes = [
        Route("/items/{item_id}", starlette_item),
        Route("/late/{number}", starlette_late),
    ]
    app = GateMiddleware(Starlette(routes=routes))
    uvicorn_port = free_port()
    config = uvicorn.Config(app, port=uvicorn_port, http="h11", log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(), name="uvicorn")
    aiohttp_app = web.Application()
    aiohttp_app.router.add_get("/items/{id}", aiohttp_item)
    runner = web.AppRunner(aiohttp_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    aiohttp_port = runner.addresses[0][1]
    hypercorn_port = free_port()
    hypercorn_config = Config()
    hypercorn_config.bind = [f"127.0.0.1:{hypercorn_port}"]
    hypercorn_config.accesslog = hypercorn_config.errorlog = None
    stopping = asyncio.Event()
    hypercorn = asyncio.create_task(
        serve(app, hypercorn_config, shutdown_trigger=stopping.wait),  # type: ignore[arg-type]
        name="hypercorn",
    )
    while not server.started:
        await asyncio.sleep(0.01)
    await wait_for_port(hypercorn_port)
    clients = [
        await send(port, get(path))
        for port in (uvicorn_port, aiohttp_port, hypercorn_port)
        for path in ("/items/1", "/items/2", "/items/3?token=secret")
    ]
    clients.append(await send(uvicorn_port, get("/late/7")))
    while sorted(waiting) != ["aiohttp"] * 3 + ["gate"] + ["starlette"] * 6:
        await asyncio.sleep(0.01)
    signal_ready()
    cue = WORKDIR / f"route-{os.getpid()}"
    while not cue.exists() and not stop_requested():
        await asyncio.sleep(0.02)
    gate.set()
    await until_stopped()
    # At once: both servers would wait for the requests, which wait for an hour.
    os._exit(0 if clients and serving and hypercorn else 1)


asyncio.run(main())
