"""A loop with a known runtime, for the step figures and stalls: once the test writes
`go-PID`, `blocker` blocks the loop once for argv[2] seconds (time.sleep in `block()`) and
notes "blocked"; `stepper` runs 50 steps and waits; `burner` burns CPU in each of its steps;
`idler` only waits; `teller`, each time the test writes `ask-PID-N`, notes whose `Handle._run`
runs its steps now ("run-N:events.py" or "run-N:steps.py")."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from target_kit import WORKDIR, note, signal_ready, until_stopped


def block(seconds: float) -> None:
    time.sleep(seconds)  # the blocking line


async def blocker(seconds: float) -> None:
    go = WORKDIR / f"go-{os.getpid()}"
    while not go.exists():
        await asyncio.sleep(0.02)
    block(seconds)
    # Whose `Handle._run` ran the step: asyncio's (events.py), or the agent's timed one.
    note("handle_run:" + handle_run_file())
    note("blocked")
    await asyncio.sleep(3600)


async def stepper() -> None:
    for _ in range(50):
        await asyncio.sleep(0)
    note("stepped")
    await asyncio.sleep(3600)


def handle_run_file() -> str:
    """Whose `Handle._run` runs the steps: asyncio's (events.py), or the agent's timed one."""
    return os.path.basename(asyncio.events.Handle._run.__code__.co_filename)


async def teller() -> None:
    asked = 0
    while True:
        if (WORKDIR / f"ask-{os.getpid()}-{asked + 1}").exists():
            asked += 1
            note(f"run-{asked}:{handle_run_file()}")
        await asyncio.sleep(0.02)


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def burner() -> None:
    while True:
        burn(0.003)
        await asyncio.sleep(0.01)


async def main() -> None:
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
    tasks = [
        asyncio.create_task(blocker(seconds), name="blocker"),
        asyncio.create_task(stepper(), name="stepper"),
        asyncio.create_task(burner(), name="burner"),
        asyncio.create_task(asyncio.sleep(3600), name="idler"),
        asyncio.create_task(teller(), name="teller"),
    ]
    signal_ready()
    await until_stopped()
    for task in tasks:
        task.cancel()


asyncio.run(main())
