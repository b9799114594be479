"""An aiohttp program with a request in each of aiohttp's waits: `client` waits for the
response of a handler that sleeps (its head: `ClientResponse.start`), `uploader` is a handler
waiting for the rest of a body its raw-socket client announced and never sends
(`StreamReader.read`), and of two requests through a connector of one connection per host,
`pool-first` has it (waiting for its response) and `pool-second` waits for it. Signals ready
once they wait, with the server's port in `port-PID`."""

from __future__ import annotations

import asyncio
import os
import socket

from aiohttp import ClientSession, TCPConnector, web
from target_kit import WORKDIR, signal_ready, until_stopped


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(3600)
    return web.Response(text="late")


async def upload(request: web.Request) -> web.Response:
    asyncio.current_task().set_name("uploader")  # type: ignore[union-attr]
    body = await request.read()
    return web.Response(text=str(len(body)))


async def client(port: int) -> None:
    async with ClientSession() as session, session.get(f"http://127.0.0.1:{port}/slow") as reply:
        await reply.text()


async def fetch(session: ClientSession, url: str) -> None:
    async with session.get(url) as reply:
        await reply.text()


async def pooled(port: int) -> None:
    """Two requests through a connector of one connection per host."""
    async with ClientSession(connector=TCPConnector(limit_per_host=1)) as session:
        url = f"http://127.0.0.1:{port}/slow"
        first = asyncio.create_task(fetch(session, url), name="pool-first")
        await asyncio.sleep(0.05)  # it takes the connection
        second = asyncio.create_task(fetch(session, url), name="pool-second")
        await asyncio.gather(first, second)


async def main() -> None:
    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_post("/upload", upload)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    waiting = asyncio.create_task(client(port), name="client")
    pool = asyncio.create_task(pooled(port), name="pooled")
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"only twelve!"
    )
    await asyncio.sleep(0.3)
    (WORKDIR / f"port-{os.getpid()}").write_text(str(port))
    signal_ready()
    await until_stopped()
    raw.close()
    # No runner.cleanup(): it would wait for the sleeping handler (aiohttp's shutdown
    # timeout); asyncio.run cancels what is left.
    waiting.cancel()
    pool.cancel()


asyncio.run(main())
