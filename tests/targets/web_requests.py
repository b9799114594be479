"""Request tasks of two web servers in one program, each waiting in its handler: uvicorn
(h11) serves an ASGI app whose `/slow` sleeps, and an aiohttp.web app whose `/slow` sleeps
too; a raw-socket client sends `GET /slow?token=secret` to each, and `POST /upload` to
aiohttp (a handler waiting for a body that never comes; it notes `upload cancelled` when
cancelled). Signals ready once the three requests wait. A `block-PID` file sends `GET
/block` to each server, whose handler holds the loop 0.3 s in `time.sleep` (noting `uvicorn
blocked` and `aiohttp blocked`). Exits at once when stopped."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import uvicorn
from aiohttp import web
from target_kit import (
    WORKDIR,
    free_port,
    note,
    send,
    signal_ready,
    stop_requested,
    until_stopped,
)

waiting: set[str] = set()
#: How long a request to `/block` holds the loop.
BLOCK_SECONDS = 0.3


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        return
    if scope["path"] == "/block":  # an async endpoint that calls something blocking
        time.sleep(BLOCK_SECONDS)
        note("uvicorn blocked")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        return
    waiting.add("uvicorn")
    await asyncio.sleep(3600)


async def aiohttp_slow(request: web.Request) -> web.Response:
    waiting.add("aiohttp")
    await asyncio.sleep(3600)
    return web.Response(text="late")


async def aiohttp_block(request: web.Request) -> web.Response:
    time.sleep(BLOCK_SECONDS)
    note("aiohttp blocked")
    return web.Response(text="done")


async def aiohttp_upload(request: web.Request) -> web.Response:
    waiting.add("upload")
    try:
        await request.read()
    except asyncio.CancelledError:
        note("upload cancelled")
        raise
    return web.Response(text="read")


async def main() -> None:
    uvicorn_port = free_port()
    config = uvicorn.Config(asgi_app, port=uvicorn_port, http="h11", log_level="error")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(), name="uvicorn")
    app = web.Application()
    app.router.add_get("/slow", aiohttp_slow)
    app.router.add_post("/upload", aiohttp_upload)
    app.router.add_get("/block", aiohttp_block)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    aiohttp_port = runner.addresses[0][1]
    while not server.started:
        await asyncio.sleep(0.01)
    slow = b"GET /slow?token=secret HTTP/1.1\r\nHost: test\r\n\r\n"
    clients = [
        await send(uvicorn_port, slow),
        await send(aiohttp_port, slow),
        await send(
            aiohttp_port, b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n"
        ),
    ]
    while waiting != {"uvicorn", "aiohttp", "upload"}:
        await asyncio.sleep(0.01)
    signal_ready()
    cue = WORKDIR / f"block-{os.getpid()}"
    while not cue.exists() and not stop_requested():
        await asyncio.sleep(0.02)
    if cue.exists():
        block = b"GET /block?token=secret HTTP/1.1\r\nHost: test\r\n\r\n"
        clients.append(await send(uvicorn_port, block))
        clients.append(await send(aiohttp_port, block))
    await until_stopped()
    # At once: both servers would wait for the requests, which wait for an hour.
    os._exit(0 if clients and serving else 1)


asyncio.run(main())
