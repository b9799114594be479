"""A program written with anyio (asyncio backend): a task group with two workers waiting on an
anyio Event, a sleeper, and `finisher`, which returns when a `finish-PID` file appears (noting
`finished`). Each notes its cancellation. anyio runs every task's coroutine inside its own
wrapper. Also one task of each of anyio's waits: `holder` holds `lock` and `gate` (a
Semaphore of 1) while `lock-waiter` and `gate-waiter` wait for them, `sender` sends on a
memory object stream nobody reads, `threaded` waits for a worker thread
(`to_thread.run_sync`), released when the program stops; `holder` also borrows `limiter` (a
CapacityLimiter of 1) that `limit-waiter` waits for, and `dreamer` sleeps forever
(`anyio.sleep_forever`)."""

from __future__ import annotations

import os
import threading

import anyio
import anyio.abc
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


async def holder(lock: anyio.Lock, gate: anyio.Semaphore, limiter: anyio.CapacityLimiter) -> None:
    async with lock, gate, limiter:
        await anyio.sleep(3600)


async def limit_waiter(limiter: anyio.CapacityLimiter) -> None:
    async with limiter:
        pass


async def dreamer() -> None:
    await anyio.sleep_forever()


async def lock_waiter(lock: anyio.Lock) -> None:
    async with lock:
        pass


async def gate_waiter(gate: anyio.Semaphore) -> None:
    async with gate:
        pass


async def sender(outbox: anyio.abc.ObjectSendStream[int]) -> None:
    await outbox.send(1)


async def threaded(release: threading.Event) -> None:
    await anyio.to_thread.run_sync(release.wait)


async def stopper(group: anyio.abc.TaskGroup, release: threading.Event, event: anyio.Event) -> None:
    while not stop_requested():
        await anyio.sleep(0.05)
    release.set()
    group.cancel_scope.cancel()
    event.set()


async def main() -> None:
    event = anyio.Event()
    lock, gate, release = anyio.Lock(), anyio.Semaphore(1), threading.Event()
    limiter = anyio.CapacityLimiter(1)
    outbox, inbox = anyio.create_memory_object_stream[int](0)
    async with anyio.create_task_group() as group:
        group.start_soon(worker, event, name="worker-0")
        group.start_soon(worker, event, name="worker-1")
        group.start_soon(sleeper, name="sleeper")
        group.start_soon(finisher, name="finisher")
        group.start_soon(holder, lock, gate, limiter, name="holder")
        group.start_soon(dreamer, name="dreamer")
        await anyio.sleep(0.02)
        group.start_soon(lock_waiter, lock, name="lock-waiter")
        group.start_soon(gate_waiter, gate, name="gate-waiter")
        group.start_soon(limit_waiter, limiter, name="limit-waiter")
        group.start_soon(sender, outbox, name="sender")
        group.start_soon(threaded, release, name="threaded")
        group.start_soon(stopper, group, release, event, name="stopper")
        await anyio.sleep(0.05)
        signal_ready()
    inbox.close()


anyio.run(main)
