"""A process with a bit of everything `taskscope dump` writes: tasks in many kinds of await
(sleep, event, lock and its holder, queue, gather, wait_for with a deadline, task group, a
task awaiting a task), finished ones (done with a result, cancelled, failed with a
traceback nobody retrieved), an await cycle, a lock deadlock, names with characters a
terminal acts on and non-ASCII ones, and a second event loop in a thread. Signals ready once
all of it stands.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from target_kit import signal_ready, until_stopped

kept: list[Any] = []


async def sleeper() -> None:
    await asyncio.sleep(3600)


async def holds(lock: asyncio.Lock, ready: asyncio.Event) -> None:
    async with lock:
        ready.set()
        await asyncio.sleep(3600)


async def takes(lock: asyncio.Lock) -> None:
    async with lock:
        pass


async def deadlocked(first: asyncio.Lock, second: asyncio.Lock, both: asyncio.Barrier) -> None:
    async with first:
        await both.wait()
        async with second:
            pass


async def partner(tasks: dict[str, asyncio.Task[None]], other: str) -> None:
    await asyncio.sleep(0)
    await tasks[other]


async def fails() -> None:
    raise ValueError("nobody looks at this")


async def answers() -> int:
    return 42


async def other_loop_main(started: threading.Event) -> None:
    kept.extend(asyncio.create_task(sleeper(), name=f"second-loop-{n}") for n in range(5))
    started.set()
    await asyncio.sleep(3600)


async def main() -> None:
    event = asyncio.Event()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(20):
        kept.append(asyncio.create_task(sleeper(), name=f"sleeper-{n}"))
        kept.append(asyncio.create_task(event.wait(), name=f"event-{n}"))
        kept.append(asyncio.create_task(queue.get(), name=f"queue-{n}"))
    lock, held = asyncio.Lock(), asyncio.Event()
    kept.append(asyncio.create_task(holds(lock, held), name="holder"))
    await held.wait()
    kept.extend(asyncio.create_task(takes(lock), name=f"waiter-{n}") for n in range(30))
    first, second, both = asyncio.Lock(), asyncio.Lock(), asyncio.Barrier(2)
    kept.append(asyncio.create_task(deadlocked(first, second, both), name="dead-a"))
    kept.append(asyncio.create_task(deadlocked(second, first, both), name="dead-b"))
    cycle: dict[str, asyncio.Task[None]] = {}
    cycle["cycle-b"] = asyncio.create_task(partner(cycle, "cycle-a"), name="cycle-b")
    cycle["cycle-a"] = asyncio.create_task(partner(cycle, "cycle-b"), name="cycle-a")
    kept.append(cycle)

    async def gathers() -> None:
        await asyncio.gather(sleeper(), sleeper())

    async def waits_for() -> None:
        await asyncio.wait_for(sleeper(), 1800)

    kept.append(asyncio.create_task(gathers(), name="gathers"))
    kept.append(asyncio.create_task(waits_for(), name="waits-for"))

    async def grouped() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(sleeper(), name="in-group")

    kept.append(asyncio.create_task(grouped(), name="group-owner"))
    target = asyncio.create_task(sleeper(), name="awaited")
    kept.append(target)

    async def awaits_task() -> None:
        await target

    kept.append(asyncio.create_task(awaits_task(), name="awaits-task"))
    odd = ("csi\x9b31mred", "rtl\u202eevil", "zero\u200bwidth", "café ☕", "del\x7fete")
    kept.extend(asyncio.create_task(sleeper(), name=name) for name in odd)
    failed = asyncio.create_task(fails(), name="fails")
    done = asyncio.create_task(answers(), name="answers")
    cancelled = asyncio.create_task(sleeper(), name="cancelled")
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait([done, cancelled])
    while not failed.done():
        await asyncio.sleep(0)
    del failed  # its exception stays unretrieved
    started = threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(other_loop_main(started)), name="second-loop", daemon=True
    )
    thread.start()
    started.wait(10)
    await asyncio.sleep(1.2)  # the failure is older than the lint's grace
    signal_ready()
    await until_stopped()


asyncio.run(main())
