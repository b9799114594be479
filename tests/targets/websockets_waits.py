"""A websockets server and client (its asyncio implementation) waiting for each other's next
message: the client task `ws-client` in `recv()`, the server's handler in `async for` over
its connection; and a Starlette websocket endpoint under uvicorn's websockets protocol (the
library's legacy implementation) waiting for the text of its client `uvicorn-ws-client`.
Signals ready once they wait, with the servers' ports in `port-PID` and `uvicorn-port-PID`."""

from __future__ import annotations

import asyncio
import os
import warnings

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from target_kit import WORKDIR, free_port, signal_ready, until_stopped
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

warnings.simplefilter("ignore", DeprecationWarning)  # uvicorn's use of the legacy protocol

connected: list[str] = []


async def echo(connection: ServerConnection) -> None:
    connected.append("server")
    async for message in connection:
        await connection.send(message)


async def client(port: int, path: str = "", who: str = "client") -> None:
    connection: ClientConnection
    async with connect(f"ws://127.0.0.1:{port}{path}") as connection:
        connected.append(who)
        await connection.recv()


async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    connected.append("endpoint")
    await websocket.receive_text()


async def main() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        waiting = asyncio.create_task(client(port), name="ws-client")
        app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
        uvicorn_port = free_port()
        config = uvicorn.Config(
            app, port=uvicorn_port, ws="websockets", log_level="error", lifespan="off"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(), name="uvicorn")
        while not server.started:
            await asyncio.sleep(0.01)
        asyncio.create_task(client(uvicorn_port, "/ws", "other"), name="uvicorn-ws-client")
        while sorted(connected) != ["client", "endpoint", "other", "server"]:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        (WORKDIR / f"port-{os.getpid()}").write_text(str(port))
        (WORKDIR / f"uvicorn-port-{os.getpid()}").write_text(str(uvicorn_port))
        signal_ready()
        await until_stopped()
        # At once: uvicorn would wait for its websocket, which waits for good.
        os._exit(0 if waiting and serving else 1)


asyncio.run(main())
