"""One situation a lint is about, built for real, or a healthy program of the same shape:
`lint_cases.py WORKDIR CASE`. Signals ready once the situation stands.

Cases: cycle, healthy_chain (tasks awaiting a task that ends), deadlock (two tasks, two
locks, each holding one), handoff (a lock held by a sleeping task, others queued),
abandoned (a module's lock taken with acquire() by a task that failed before releasing it,
two workers queued; the task kept), abandoned_gone (the same, the task not kept), failed
(a failed task nobody awaits), failed_awaited, leak (a pending task nobody references),
leak_control (the same, then a gc.collect(): notes whether it was destroyed), until_cancelled
(waits written to last until cancelled, and one whose waker was dropped), event (a task
waiting on an Event only it can reach), event_held (the same Event held by main), queue
(a consumer on a queue a live producer holds), spin (a sleep(0) loop), poll (a loop that
sleeps for real), stall (one step blocking the loop 300 ms), pause (the same 300 ms
awaited), stubborn (a task that catches its CancelledError and goes on), cleanup (one that
cleans up and ends cancelled).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import weakref
from typing import Any

from target_kit import note, signal_ready, until_stopped

CASE = sys.argv[2]
kept: list[Any] = []


async def partner(tasks: dict[str, asyncio.Task[None]], other: str) -> None:
    await asyncio.sleep(0)
    await tasks[other]


async def cycle() -> None:
    tasks: dict[str, asyncio.Task[None]] = {}
    tasks["cycle-b"] = asyncio.create_task(partner(tasks, "cycle-a"), name="cycle-b")
    tasks["cycle-a"] = asyncio.create_task(partner(tasks, "cycle-b"), name="cycle-a")
    kept.append(tasks)


async def healthy_chain() -> None:
    async def leaf() -> None:
        await asyncio.sleep(3600)

    async def middle(task: asyncio.Task[None]) -> None:
        await task

    leaf_task = asyncio.create_task(leaf(), name="leaf")
    kept.append(asyncio.create_task(middle(leaf_task), name="middle"))
    kept.append(leaf_task)


async def transfer(first: asyncio.Lock, second: asyncio.Lock, held: asyncio.Event) -> None:
    async with first:
        held.set()
        await asyncio.sleep(0.05)
        async with second:
            pass


async def deadlock() -> None:
    a, b = asyncio.Lock(), asyncio.Lock()
    held_a, held_b = asyncio.Event(), asyncio.Event()
    kept.append(asyncio.create_task(transfer(a, b, held_a), name="transfer-a"))
    kept.append(asyncio.create_task(transfer(b, a, held_b), name="transfer-b"))
    await held_a.wait()
    await held_b.wait()
    await asyncio.sleep(0.2)


async def handoff() -> None:
    lock = asyncio.Lock()

    async def holder() -> None:
        async with lock:
            await asyncio.sleep(3600)

    async def queued() -> None:
        async with lock:
            pass

    kept.append(asyncio.create_task(holder(), name="holder"))
    await asyncio.sleep(0.05)
    kept.append(asyncio.create_task(queued(), name="queued-1"))
    kept.append(asyncio.create_task(queued(), name="queued-2"))
    await asyncio.sleep(0.05)


DB_LOCK = asyncio.Lock()


async def careless_load() -> None:
    await DB_LOCK.acquire()
    raise ValueError("bad config")  # no `finally`: the lock stays taken


async def use_db() -> None:
    async with DB_LOCK:
        pass


async def abandoned(keep: bool = True) -> None:
    loader = asyncio.create_task(careless_load(), name="loader")
    try:
        await loader
    except ValueError:
        pass
    if keep:
        kept.append(loader)
    del loader
    kept.extend(asyncio.create_task(use_db(), name=f"worker-{i}") for i in range(2))
    while len(DB_LOCK._waiters or ()) < 2:  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)


async def abandoned_gone() -> None:
    await abandoned(keep=False)
    gc.collect()  # the loader task (its exception and frames) goes


async def fail() -> None:
    await asyncio.sleep(0)
    raise ValueError("boom")


async def failed() -> None:
    task = asyncio.create_task(fail(), name="failing")
    kept.append(task)
    while not task.done():
        await asyncio.sleep(0.01)


async def failed_awaited() -> None:
    task = asyncio.create_task(fail(), name="failing")
    try:
        await task
    except ValueError:
        note("retrieved")


async def forever() -> None:
    await asyncio.Future()


async def leak() -> None:
    # The collector may destroy the task at any young collection, before a look sees it:
    # off while the case stands (`leak_control` shows it would).
    gc.disable()
    asyncio.create_task(forever(), name="leak")  # unreferenced: the point of the case
    await asyncio.sleep(0.05)


async def leak_control() -> None:
    task = asyncio.create_task(forever(), name="leak")
    await asyncio.sleep(0.05)
    alive = weakref.ref(task)
    del task
    gc.collect()
    note("collected" if alive() is None else "alive")


async def wait_on(event: asyncio.Event) -> None:
    await event.wait()


async def event() -> None:
    kept.append(asyncio.create_task(wait_on(asyncio.Event()), name="waiter"))
    await asyncio.sleep(0.05)


async def event_held() -> None:
    gate = asyncio.Event()
    kept.append(gate)
    kept.append(asyncio.create_task(wait_on(gate), name="waiter"))
    await asyncio.sleep(0.05)


async def until_cancelled() -> None:
    """Waits written to last until cancelled ("run forever"), and one that lost its waker."""

    async def made_future() -> None:
        await asyncio.Future()

    async def made_by_the_loop() -> None:
        await asyncio.get_running_loop().create_future()

    async def made_event() -> None:
        await asyncio.Event().wait()

    waiters: list[asyncio.Future[None]] = []

    async def dropped() -> None:
        future = asyncio.get_running_loop().create_future()
        waiters.append(future)
        await future

    for coroutine, name in (
        (made_future, "made-future"),
        (made_by_the_loop, "made-by-the-loop"),
        (made_event, "made-event"),
        (dropped, "dropped"),
    ):
        kept.append(asyncio.create_task(coroutine(), name=name))
    await asyncio.sleep(0.05)
    waiters.clear()  # the bug: its waker dropped without a result


async def queue() -> None:
    jobs: asyncio.Queue[int] = asyncio.Queue()

    async def consumer(queue: asyncio.Queue[int]) -> None:
        while True:
            await queue.get()

    async def producer(queue: asyncio.Queue[int]) -> None:
        while True:
            await asyncio.sleep(3600)
            queue.put_nowait(1)

    kept.append(asyncio.create_task(consumer(jobs), name="consumer"))
    kept.append(asyncio.create_task(producer(jobs), name="producer"))
    del jobs  # only the tasks hold it now: the producer's frame among them
    await asyncio.sleep(0.05)


async def spin() -> None:
    async def spinner() -> None:
        while True:
            await asyncio.sleep(0)

    kept.append(asyncio.create_task(spinner(), name="spinner"))
    await asyncio.sleep(1.5)


async def poll() -> None:
    async def poller() -> None:
        while True:
            await asyncio.sleep(0.01)

    kept.append(asyncio.create_task(poller(), name="poller"))
    await asyncio.sleep(1.5)


async def stall() -> None:
    async def blocker() -> None:
        await asyncio.sleep(0.3)
        time.sleep(0.3)  # the blocking line

    task = asyncio.create_task(blocker(), name="blocker")
    kept.append(task)
    await task


async def pause() -> None:
    async def waiter() -> None:
        await asyncio.sleep(0.3)
        await asyncio.sleep(0.3)  # where `stall` blocks: this one awaits

    task = asyncio.create_task(waiter(), name="waiter")
    kept.append(task)
    await task


async def stubborn() -> None:
    async def ignores_cancels() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                note("ignored a cancel")

    task = asyncio.create_task(ignores_cancels(), name="stubborn")
    kept.append(task)
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)


async def cleanup() -> None:
    async def cleans_up() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.1)  # closes what it opened, then goes
            raise

    task = asyncio.create_task(cleans_up(), name="cleans-up")
    kept.append(task)
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def main() -> None:
    await globals()[CASE]()
    signal_ready()
    await until_stopped()


asyncio.run(main())
