"""An httpx client (httpcore's pool, on anyio's asyncio backend) with one connection at most,
two requests to a server that reads them and never answers: `first` has the connection and
waits for its response (anyio's `SocketStream.receive`), `second` waits for the connection.
Signals ready once both wait, with the server's port in `port-PID`."""

from __future__ import annotations

import asyncio
import os

import httpx
from target_kit import WORKDIR, signal_ready, until_stopped

requests_read: list[bytes] = []


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads a request's head and never answers."""
    requests_read.append(await reader.readuntil(b"\r\n\r\n"))
    await asyncio.sleep(3600)


async def fetch(client: httpx.AsyncClient, url: str) -> None:
    await client.get(url)


async def main() -> None:
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(limits=limits, timeout=None) as client:
        url = f"http://127.0.0.1:{port}/slow"
        first = asyncio.create_task(fetch(client, url), name="first")
        while not requests_read:
            await asyncio.sleep(0.01)
        second = asyncio.create_task(fetch(client, url), name="second")
        await asyncio.sleep(0.2)
        (WORKDIR / f"port-{os.getpid()}").write_text(str(port))
        signal_ready()
        await until_stopped()
        first.cancel()
        second.cancel()
        await asyncio.gather(first, second, return_exceptions=True)


asyncio.run(main())
