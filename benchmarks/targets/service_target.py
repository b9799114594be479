"""A real aiohttp.web service for benchmarks/host_cost.py's `service` section (issue 10).

Run: python service_target.py PORT READY_FILE [--background N] [--aiomonitor]
     (or under `taskscope run`, i.e. `python -m taskscope.agent.launch service_target.py ...`)

GET / does a little async work (an `asyncio.sleep(0)`, a small dict) and answers with a small
JSON body, as a real handler would. N background tasks (default 1,000) sleep and wake now and
then, so that an agent has something to look at. With --aiomonitor, aiomonitor's monitor is
started in the app, as its documentation says (`start_monitor(loop)`), nobody connected; its
web UI's port is written to READY_FILE's second line. READY_FILE gets the word `ready` (and
that port) once the server listens. The process runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import signal
import socket
from pathlib import Path
from typing import Any

from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    """A handler doing a little async work: one suspension, a small JSON body."""
    await asyncio.sleep(0)
    return web.json_response({"ok": True, "path": request.path, "items": [1, 2, 3]})


async def background(index: int) -> None:
    """A task of the app's own: wakes every 1-10 s (one in a hundred wakes each 0.5 s)."""
    period = 0.5 if index % 100 == 0 else random.uniform(1.0, 10.0)
    for _wake in itertools.count():
        await asyncio.sleep(period)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def serve(port: int, ready: str, tasks: int, with_aiomonitor: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    workers = [asyncio.create_task(background(i), name=f"background-{i}") for i in range(tasks)]
    monitor: Any = None
    lines = ["ready"]
    if with_aiomonitor:
        import aiomonitor

        webui_port = free_port()
        monitor = aiomonitor.start_monitor(
            loop, port=free_port(), console_port=free_port(), webui_port=webui_port
        )
        lines.append(str(webui_port))
    Path(ready).write_text("\n".join(lines) + "\n")  # noqa: ASYNC240 (once, before the load)
    try:
        await stop.wait()
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await runner.cleanup()
        if monitor is not None:
            monitor.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("ready")
    parser.add_argument("--background", type=int, default=1000)
    parser.add_argument("--aiomonitor", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.ready, args.background, args.aiomonitor))


if __name__ == "__main__":
    main()
