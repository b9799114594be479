"""A program written with anyio (asyncio backend): a task group with two workers waiting on an
anyio Event, a sleeper, and `finisher`, which returns when a `finish-PID` file appears (noting
`finished`). Each notes its cancellation. anyio runs every task's coroutine inside its own
wrapper."""

from __future__ import annotations

import os

import anyio
from target_kit import WORKDIR, note, signal_ready, stop_requested


async def worker(event: anyio.Event) -> None:
    try:
        await event.wait()
    except anyio.get_cancelled_exc_class():
        note("sibling cancelled")
        raise


async def sleeper() -> None:
    try:
        await anyio.sleep(3600)
    except anyio.get_cancelled_exc_class():
        note("sleeper cancelled")
        raise


async def finisher() -> None:
    cue = WORKDIR / f"finish-{os.getpid()}"
    while not cue.exists():
        await anyio.sleep(0.02)
    note("finished")


async def main() -> None:
    event = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(worker, event, name="worker-0")
        group.start_soon(worker, event, name="worker-1")
        group.start_soon(sleeper, name="sleeper")
        group.start_soon(finisher, name="finisher")
        await anyio.sleep(0.05)
        signal_ready()
        while not stop_requested():
            await anyio.sleep(0.05)
        group.cancel_scope.cancel()
        event.set()


anyio.run(main)
