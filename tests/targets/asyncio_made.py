"""A target where asyncio makes tasks of its own: a server accepts a connection (asyncio runs
its accept handshake, then the program's handler, as tasks), next to the program's own named
tasks. Usage: asyncio_made.py WORKDIR; writes WORKDIR/ready-PID once a client is served."""

from __future__ import annotations

import asyncio
import sys

from target_kit import signal_ready, until_stopped


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(100)
    writer.close()


async def idle_client(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.read(100)
    writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = asyncio.create_task(idle_client(port), name="client-1")
    sleeper = asyncio.create_task(asyncio.sleep(3600), name="sleeper")
    while not any(task.get_coro().__name__ == "handle_client" for task in asyncio.all_tasks()):
        await asyncio.sleep(0.01)
    signal_ready()
    await until_stopped()
    client.cancel()
    sleeper.cancel()
    server.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
