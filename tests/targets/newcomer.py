"""What a new user tries taskscope on: tasks named and unnamed (asyncio's `Task-N`), one awaited
child and one fire-and-forget task, tasks that finished before anyone looked (done, failed,
cancelled), a ticker, and a loop that blocks itself on request.

    newcomer.py WORKDIR [--thread]

Once ready, a file `block-PID` in WORKDIR makes the main loop call time.sleep(seconds written
in it); it notes "blocking" first and "unblocked" after. With --thread a second loop runs in a
thread named `side-loop`, with a task `side-worker`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

from target_kit import WORKDIR, blocker, note, signal_ready, stop_requested


async def victim() -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        note("victim cancelled")
        raise


async def flush_loop() -> None:
    while True:
        await asyncio.sleep(3600)


async def transfer() -> None:
    await asyncio.sleep(3600)


async def ticker() -> None:
    while True:
        await asyncio.sleep(0.2)


async def anonymous() -> None:
    await asyncio.sleep(3600)


async def fails() -> None:
    raise ValueError("bad row")


async def reporter() -> None:
    """On a file `report-PID`, notes what an agent may have changed in the process."""
    request = WORKDIR / f"report-{os.getpid()}"
    while True:
        while not request.exists():
            await asyncio.sleep(0.02)
        request.unlink()
        loop = asyncio.get_running_loop()
        threads = sorted(thread.name for thread in threading.enumerate())
        modules = sorted(name for name in sys.modules if name.startswith("taskscope"))
        hooks = [
            "create_task" in vars(loop),
            asyncio.events._set_running_loop.__module__,
            asyncio.events.new_event_loop.__module__,
            len(asyncio.current_task()._callbacks or ()),  # type: ignore[union-attr]
        ]
        note(f"report threads={threads} modules={modules} hooks={hooks}")


def side_loop(ready: threading.Event) -> None:
    async def side_main() -> None:
        asyncio.create_task(transfer(), name="side-worker")
        ready.set()
        while not stop_requested():
            await asyncio.sleep(0.05)

    asyncio.run(side_main())


async def main() -> None:
    if "--thread" in sys.argv:
        ready = threading.Event()
        threading.Thread(target=side_loop, args=(ready,), name="side-loop", daemon=True).start()
        ready.wait()
    # Finished before anyone looked: three done, one failed, one cancelled.
    for _ in range(3):
        await asyncio.create_task(asyncio.sleep(0))
    failing = asyncio.create_task(fails(), name="early-failure")
    await asyncio.wait([failing])
    failing.exception()
    cancelled = asyncio.create_task(asyncio.sleep(3600), name="early-cancel")
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait([cancelled])
    # Unnamed tasks, named Task-N by asyncio, and named ones.
    for _ in range(3):
        asyncio.create_task(anonymous())
    asyncio.create_task(transfer(), name="transfer-a")
    asyncio.create_task(transfer(), name="transfer-b")
    asyncio.create_task(transfer(), name="retry")
    asyncio.create_task(transfer(), name="retry")  # two tasks, one name
    asyncio.create_task(flush_loop(), name="flusher")  # fire and forget: nobody awaits it
    asyncio.create_task(ticker(), name="ticker")
    asyncio.create_task(blocker(), name="blocker")
    asyncio.create_task(reporter(), name="reporter")
    victim_task = asyncio.create_task(victim(), name="victim")

    async def stopper() -> None:
        while not stop_requested():
            await asyncio.sleep(0.05)
        victim_task.cancel()

    asyncio.create_task(stopper(), name="stopper")
    signal_ready()
    try:
        await victim_task
    except asyncio.CancelledError:
        pass
    while not stop_requested():
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main())
