"""taskscope on a websockets program: a connection waiting for its next message reads as a
read from its peer (`ClientConnection.recv from 127.0.0.1:PORT`), not as the future its
message assembler waits on (`Future self.get_waiter`)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import agent_snapshot

pytest.importorskip("websockets", reason="these tests need websockets (pip install websockets)")
pytest.importorskip("uvicorn", reason="these tests need uvicorn (pip install uvicorn)")
pytest.importorskip("starlette", reason="these tests need starlette (pip install starlette)")


def test_websocket_receivers_say_their_peer(start: Any) -> None:
    # GIVEN a websockets client in recv() and the server's handler in `async for`
    target = start("websockets_waits.py").wait_ready()
    port = target.file(f"port-{target.pid}").read_text()
    tasks = agent_snapshot(target.pid)["tasks"]
    client = next(task for task in tasks if task["name"] == "ws-client")["awaiting"]
    # THEN the client reads from the server
    assert client["kind"] == "stream_read", client
    assert client["text"] == f"ClientConnection.recv from 127.0.0.1:{port}", client
    # AND the server's handler from the client (its own port)
    handlers = [
        task["awaiting"]
        for task in tasks
        if (task["awaiting"] or {}).get("call") == "ServerConnection.recv"
    ]
    assert len(handlers) == 1, [task["awaiting"] for task in tasks]
    (handler,) = handlers
    assert handler["text"].startswith("ServerConnection.recv from 127.0.0.1:"), handler
    assert handler["peer"] != f"127.0.0.1:{port}"
    # AND uvicorn's websocket (the library's legacy protocol) waits to read from its client,
    # in a task that says the websocket it serves
    endpoint = next(
        task
        for task in tasks
        if (task.get("request") or {}).get("method") == "WEBSOCKET"
        and task["request"]["path"] == "/ws"
        and task["state"] == "pending"
    )
    assert endpoint["awaiting"]["kind"] == "stream_read", endpoint["awaiting"]
    assert endpoint["awaiting"]["text"].startswith("WebSocketProtocol.recv from 127.0.0.1:")
    uvicorn_port = target.file(f"uvicorn-port-{target.pid}").read_text()
    assert endpoint["awaiting"]["peer"] != f"127.0.0.1:{uvicorn_port}"  # the client's port
    code, _out, err = target.stop()
    assert code == 0, err
