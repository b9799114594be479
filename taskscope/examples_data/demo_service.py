"""The program `taskscope demo` watches: a small asyncio service with something to look at.

It has a TaskGroup of long-lived tasks (an API server, a dispatcher feeding workers through a
queue, a reporter), short jobs that finish, fail or get cancelled every few seconds, a slow
task, a deadlock (two tasks taking two locks in opposite order), an await cycle (two tasks
awaiting each other) and a task that ignores cancellation. Run it with
`taskscope run examples/demo_service.py` and open `taskscope attach PID`, or just
`taskscope demo`. It runs until interrupted.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Coroutine
from typing import Any

JOB_FAILURE_RATE = 0.2


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo lines back until the client goes away."""
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    finally:
        writer.close()


#: Tasks nobody awaits are kept here, so the garbage collector cannot take them.
background: set[asyncio.Task[None]] = set()


def spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    task = asyncio.create_task(coro, name=name)
    background.add(task)
    return task


async def api_server(ready: asyncio.Event) -> None:
    """A TCP echo server on a free local port, with one client connected to it."""
    server = await asyncio.start_server(handle_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    spawn(idle_client(port), "client-1")
    ready.set()
    async with server:
        await server.serve_forever()


async def idle_client(port: int) -> None:
    """A client that connects and then says nothing: its handler waits on a read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.read(1)
    finally:
        writer.close()


async def producer(jobs: asyncio.Queue[int]) -> None:
    """Puts a job on the queue every half second."""
    number = 0
    while True:
        number += 1
        await jobs.put(number)
        await asyncio.sleep(0.5)


async def process(job: int) -> str:
    """One job: a short wait, and sometimes a failure."""
    await asyncio.sleep(random.uniform(0.5, 3.0))
    if random.random() < JOB_FAILURE_RATE:
        raise ValueError(f"bad row {job}")
    return f"job {job} ok"


async def worker(jobs: asyncio.Queue[int]) -> None:
    """Takes jobs off the queue and runs each in its own task."""
    while True:
        job = await jobs.get()
        task = asyncio.create_task(process(job), name=f"job-{job}")
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=2.5)
        except (TimeoutError, ValueError):
            task.cancel()
        finally:
            jobs.task_done()


async def reporter(jobs: asyncio.Queue[int]) -> None:
    """Wakes up every few seconds to report, like a metrics exporter."""
    reports = 0
    while True:
        await asyncio.sleep(5)
        reports += 1
        print(f"report {reports}: {jobs.qsize()} jobs queued", flush=True)


async def slow_query() -> str:
    """A task that takes far longer than anyone expects."""
    await asyncio.sleep(600)
    return "600 rows"


async def transfer(first: asyncio.Lock, second: asyncio.Lock) -> None:
    """Takes two locks; with a partner taking them in the other order, a deadlock."""
    async with first:
        await asyncio.sleep(0.1)
        async with second:
            await asyncio.sleep(1)


async def fetch(tasks: dict[str, asyncio.Task[None]], other: str, started: asyncio.Event) -> None:
    """Awaits the other fetch task, which awaits this one: an await cycle."""
    await started.wait()
    await tasks[other]


async def stubborn() -> None:
    """Ignores cancellation: catches CancelledError and keeps going."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print("stubborn: ignoring a cancellation", file=sys.stderr, flush=True)


def rebuild_index() -> None:
    """A synchronous call in async code: it holds the whole loop while it runs."""
    time.sleep(0.3)


async def cache_refresher() -> None:
    """Every 15 seconds, blocks the loop for 300 ms (a stall the dashboard keeps)."""
    while True:
        await asyncio.sleep(15)
        rebuild_index()


async def cruncher() -> None:
    """Busy in every step: 10 ms of arithmetic, then a short sleep (the busiest task)."""
    while True:
        deadline = time.perf_counter() + 0.01
        while time.perf_counter() < deadline:
            sum(range(1000))
        await asyncio.sleep(0.05)


async def audit_log() -> None:
    """Fails once, early; nobody awaits it, so nobody sees the exception."""
    await asyncio.sleep(0.2)
    raise ConnectionError("audit log server refused the connection")


async def main() -> None:
    jobs: asyncio.Queue[int] = asyncio.Queue()
    ready = asyncio.Event()
    lock_a, lock_b = asyncio.Lock(), asyncio.Lock()
    fetches: dict[str, asyncio.Task[None]] = {}
    started = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(api_server(ready), name="api-server")
        group.create_task(producer(jobs), name="producer")
        for index in range(1, 4):
            group.create_task(worker(jobs), name=f"worker-{index}")
        group.create_task(reporter(jobs), name="reporter")
        group.create_task(slow_query(), name="slow-query")
        group.create_task(stubborn(), name="stubborn")
        group.create_task(cache_refresher(), name="cache-refresher")
        group.create_task(cruncher(), name="cruncher")
        spawn(audit_log(), "audit-log")
        spawn(transfer(lock_a, lock_b), "transfer-a")
        spawn(transfer(lock_b, lock_a), "transfer-b")
        fetches["fetch-7"] = asyncio.create_task(fetch(fetches, "fetch-8", started), name="fetch-7")
        fetches["fetch-8"] = asyncio.create_task(fetch(fetches, "fetch-7", started), name="fetch-8")
        started.set()
        await ready.wait()
        print("demo service ready", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
