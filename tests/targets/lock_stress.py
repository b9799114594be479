"""A deterministic stress of asyncio locks: tasks contending for Locks (fast path, queued,
cancelled while waiting, cancelled right after being woken), a Condition with notify and
wait_for, and a manual acquire/release across tasks. Prints a trace digest; the same program
must print the same with the agent as without."""

from __future__ import annotations

import asyncio
import hashlib

trace: list[str] = []


async def worker(name: str, locks: list[asyncio.Lock], rounds: int) -> None:
    for turn in range(rounds):
        lock = locks[(turn * 7 + len(name)) % len(locks)]
        async with lock:
            trace.append(f"{name} has {locks.index(lock)} at {turn} locked={lock.locked()}")
            for _ in range(turn % 3):
                await asyncio.sleep(0)


async def cancelled_waiters(lock: asyncio.Lock) -> None:
    await lock.acquire()
    waiters = [asyncio.create_task(lock.acquire()) for _ in range(5)]
    await asyncio.sleep(0)
    waiters[1].cancel()
    lock.release()  # wakes waiters[0]
    waiters[0].cancel()  # cancelled right after being woken: the lock passes on
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    outcomes = [w.cancelled() or w.result() for w in waiters if w.done()]
    trace.append(f"cancel outcomes {outcomes} locked={lock.locked()}")
    while lock.locked():
        lock.release()
        await asyncio.sleep(0)
    for waiter in waiters:
        if not waiter.done():
            waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    trace.append(f"after release locked={lock.locked()} waiters={len(lock._waiters or ())}")


async def condition_round() -> None:
    condition = asyncio.Condition()
    items: list[int] = []

    async def consumer(index: int) -> None:
        async with condition:
            await condition.wait_for(lambda: len(items) > index)
            trace.append(f"consumer {index} got {items[index]} locked={condition.locked()}")

    consumers = [asyncio.create_task(consumer(i)) for i in range(4)]
    for value in range(4):
        async with condition:
            items.append(value * 10)
            condition.notify_all()
        await asyncio.sleep(0)
    await asyncio.gather(*consumers)


async def release_elsewhere() -> None:
    lock = asyncio.Lock()
    await lock.acquire()

    async def releaser() -> None:
        lock.release()

    await asyncio.create_task(releaser())
    trace.append(f"released by another task: locked={lock.locked()}")


async def main() -> None:
    locks = [asyncio.Lock() for _ in range(3)]
    await asyncio.gather(*(worker(f"w{i}", locks, 40) for i in range(6)))
    await cancelled_waiters(asyncio.Lock())
    await condition_round()
    await release_elsewhere()
    digest = hashlib.sha256("\n".join(trace).encode()).hexdigest()[:16]
    print(f"lock stress: {len(trace)} events, digest {digest}")
    print("\n".join(trace[-8:]))


asyncio.run(main())
