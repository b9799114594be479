"""An ASGI app for uvicorn with several workers: each worker, at startup, starts a named
background task (`heartbeat-PID`) and writes `ready-worker-PID` in the directory named by
TASKSCOPE_TEST_DIR; `/slow` awaits a long sleep so a request is a task waiting in a worker.

Started by the tests as `python -m uvicorn uvicorn_app:app --workers 2 --uds PATH`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

WORKDIR = Path(os.environ.get("TASKSCOPE_TEST_DIR", "."))
_background: set[asyncio.Task[None]] = set()


async def heartbeat() -> None:
    while True:
        await asyncio.sleep(0.2)


async def slow_answer() -> None:
    await asyncio.sleep(3600)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                task = asyncio.create_task(heartbeat(), name=f"heartbeat-{os.getpid()}")
                _background.add(task)
                (WORKDIR / f"ready-worker-{os.getpid()}").write_text("ready")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in _background:
                    task.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        (WORKDIR / f"slow-{os.getpid()}").write_text("waiting")
        await slow_answer()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"{os.getpid()}\n".encode()})
