"""The live tasks the benchmarks look at: a mix as a server has them (sleeping, waiting on a
queue, a lock, an event four coroutines deep, in TaskGroups or gathers, some waking), in one
place so every benchmark measures the same kind of program. Standard library only: targets
import it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


async def population(
    size: int,
    *,
    owner_every: int = 100,
    gather_owners: bool = False,
    owners_count_children: bool = False,
    waker_every: int | None = None,
    yield_every: int | None = None,
    settle: float = 0.05,
) -> list[asyncio.Task[Any]]:
    """Start about `size` tasks and return them once they wait.

    Every `owner_every`-th task owns nine sleepers (a TaskGroup; every other one a gather when
    `gather_owners`), counted as ten tasks when `owners_count_children`. With `waker_every`, one
    task in that many wakes twice a second, as a server's busy connections do. With
    `yield_every`, the loop runs between batches so owners start their children as we go.
    """
    queue: asyncio.Queue[int] = asyncio.Queue()
    lock = asyncio.Lock()
    await lock.acquire()
    gate = asyncio.Event()

    async def sleeper() -> None:
        await asyncio.sleep(3600)

    async def waker(phase: float) -> None:
        await asyncio.sleep(phase)
        for _ in range(1_000_000):  # half a second at a time, as long as the run lasts
            await asyncio.sleep(0.5)

    async def consumer() -> None:
        await queue.get()

    async def locker() -> None:
        async with lock:
            pass

    async def nested(depth: int) -> None:
        if depth:
            await nested(depth - 1)
        else:
            await gate.wait()

    async def group_owner() -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(9):
                group.create_task(sleeper())

    async def gather_owner() -> None:
        await asyncio.gather(*(sleeper() for _ in range(9)))

    def nested3() -> Coroutine[Any, Any, None]:
        return nested(3)

    makers: list[Callable[[], Coroutine[Any, Any, None]]] = [sleeper, consumer, locker, nested3]
    tasks: list[asyncio.Task[Any]] = []
    created = 0
    while created < size:
        position = created
        if position % owner_every == 0:
            use_gather = gather_owners and position % (2 * owner_every) != 0
            tasks.append(asyncio.create_task(gather_owner() if use_gather else group_owner()))
            created += 10 if owners_count_children else 1
        elif waker_every is not None and position % waker_every == 1:
            tasks.append(asyncio.create_task(waker((position % 997) / 997 * 0.5)))
            created += 1
        else:
            tasks.append(asyncio.create_task(makers[position % len(makers)]()))
            created += 1
        if yield_every is not None and position % yield_every == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(settle)
    return tasks
