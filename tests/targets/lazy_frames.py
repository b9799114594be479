"""A target whose tasks are suspended in coroutines with one place to suspend at (five
`single-N` on one Event, three `getter-N` on one Queue, asyncio's Event.wait and Queue.get
under them) and with several (`several`, on an Event of its own). Once a file `check-PID`
appears, it notes for each task how many coroutines of its chain have a frame object
(`single-1: frames 0 of 2`), as the collector lists them: the agent's look must not have
made one where the coroutine's code told where it was, and the description of a shared
object was already made (the first task found on it has its frames read, to name it)."""

from __future__ import annotations

import asyncio
import gc
import os
import types

from target_kit import WORKDIR, note, signal_ready, until_stopped


async def single(never: asyncio.Event) -> None:
    await never.wait()  # the only await: one place to suspend at


async def several(never: asyncio.Event) -> None:
    await asyncio.sleep(0)
    await never.wait()


async def getter(jobs: asyncio.Queue[int]) -> None:
    await jobs.get()


def frames_made(task: asyncio.Task[object]) -> tuple[int, int]:
    """(coroutines of the task's chain with a frame object, coroutines), read without
    making one: the collector's view of a coroutine lists its frame object if it has one."""
    made = total = 0
    coro: object = task.get_coro()
    while isinstance(coro, types.CoroutineType):
        total += 1
        made += any(type(ref) is types.FrameType for ref in gc.get_referents(coro))
        coro = coro.cr_await
    return made, total


async def checker(tasks: list[asyncio.Task[object]]) -> None:
    cue = WORKDIR / f"check-{os.getpid()}"
    while not cue.exists():
        await asyncio.sleep(0.02)
    for task in tasks:
        made, total = frames_made(task)
        note(f"{task.get_name()}: frames {made} of {total}")


async def main() -> None:
    never, other, jobs = asyncio.Event(), asyncio.Event(), asyncio.Queue[int]()
    tasks: list[asyncio.Task[object]] = [
        *(asyncio.create_task(single(never), name=f"single-{n}") for n in range(5)),
        asyncio.create_task(several(other), name="several"),
        *(asyncio.create_task(getter(jobs), name=f"getter-{n}") for n in range(3)),
    ]
    checking = asyncio.create_task(checker(tasks), name="checker")
    await asyncio.sleep(0.05)
    signal_ready()
    await until_stopped()
    checking.cancel()
    for task in tasks:
        task.cancel()


asyncio.run(main())
