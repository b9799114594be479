"""A program on uvloop's event loop (`uvloop.run`): a task that creates another, a sleeping
`victim` whose cancellation the program notes, a task that fails at once, and `indexer`, which
blocks the loop in `time.sleep` for 1.5 s when a `stall-PID` file appears (it notes `blocking`
first); `stepper` holds the loop on cue, see its docstring. Runs with or without taskscope: the
tests start it under `taskscope run`, attach to it plain, or (second argument `install`) let it
call `taskscope.install()` itself, after uvloop was imported. With `hold` instead, the main
task, once ready, keeps running (the loop held in `time.sleep`) until a `looked-PID` file
appears: a first look sees it running."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import uvloop
from target_kit import WORKDIR, note, signal_ready, spawner, until_stopped, victim


async def fails() -> None:
    raise ValueError("boom")


def rebuild_index() -> None:
    time.sleep(1.5)  # the blocking line


async def indexer() -> None:
    cue = WORKDIR / f"stall-{os.getpid()}"
    while not cue.exists():
        await asyncio.sleep(0.02)
    note("blocking")
    rebuild_index()
    note("unblocked")
    await asyncio.sleep(3600)


def hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # the short blocking line


def blocking_callback(seconds: float) -> None:
    hold_the_loop(seconds)
    asyncio.get_running_loop().call_soon(note, "callback-blocked")  # once this step is over


async def stepper() -> None:
    """Cues: `short-block-PID` (hold the loop that many seconds once), `short-steps-PID` (in
    steps of that many seconds for 1.2 s, yielding between them), `callback-block-PID`
    (the same as the first, from a plain callback of the loop's)."""
    pid = os.getpid()
    while True:
        for name in ("short-block", "short-steps", "callback-block"):
            cue = WORKDIR / f"{name}-{pid}"
            if not cue.exists():
                continue
            seconds = float(cue.read_text())
            cue.unlink()
            if name == "short-block":
                hold_the_loop(seconds)
                await asyncio.sleep(0)  # noted once this step is over
                note("short-blocked")
            elif name == "short-steps":
                for _ in range(round(1.2 / seconds)):
                    hold_the_loop(seconds)
                    await asyncio.sleep(0)
                note("short-stepped")
            else:
                asyncio.get_running_loop().call_soon(blocking_callback, seconds)
        await asyncio.sleep(0.05)


async def main() -> None:
    tasks = [
        asyncio.create_task(spawner(), name="spawner"),
        asyncio.create_task(victim(), name="victim"),
        asyncio.create_task(indexer(), name="indexer"),
        asyncio.create_task(stepper(), name="stepper"),
    ]
    failing = asyncio.create_task(fails(), name="fails")
    await asyncio.wait([failing])
    failing.exception()  # retrieved: nothing printed at exit
    signal_ready()
    if sys.argv[2:] == ["hold"]:
        while not (WORKDIR / f"looked-{os.getpid()}").exists():
            time.sleep(0.01)
    await until_stopped()
    for task in tasks:
        task.cancel()
    note(f"loop {type(asyncio.get_running_loop()).__module__}")


if sys.argv[2:] == ["install"]:
    import taskscope

    taskscope.install()
uvloop.run(main())
