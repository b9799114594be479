"""Two tasks deadlocked on two asyncio.Locks: transfer-a holds `first` and waits for `second`,
transfer-b holds `second` and waits for `first`.

argv[2] "now" (default): the deadlock forms, then the target says it is ready. "on-go": the
target says it is ready first and forms the deadlock when a `go-PID` file appears (so a test
can attach before the locks are taken), noting "deadlocked" once both tasks wait. "by-acquire":
as "now", each task taking its locks with `acquire()` and `release()` rather than `async with`
(which leaves nothing on its stack to tell who holds a lock taken before the agent). Either way
it notes, when it is stopped, whether `asyncio.Lock`'s class has an attribute `_locked` (asyncio
gives it none: only the agent's note of lock holders), and whether the loop object has an
attribute `call_exception_handler` (the agent's watch of unretrieved exceptions)."""

from __future__ import annotations

import asyncio
import os
import sys

from target_kit import WORKDIR, note, signal_ready, until_stopped


async def transfer(mine: asyncio.Lock, theirs: asyncio.Lock, both_hold: asyncio.Barrier) -> None:
    async with mine:
        await both_hold.wait()
        async with theirs:
            pass


async def transfer_by_acquire(
    mine: asyncio.Lock, theirs: asyncio.Lock, both_hold: asyncio.Barrier
) -> None:
    await mine.acquire()
    try:
        await both_hold.wait()
        await theirs.acquire()
        theirs.release()
    finally:
        mine.release()


async def deadlock(by_acquire: bool = False) -> list[asyncio.Task[None]]:
    first, second = asyncio.Lock(), asyncio.Lock()
    both_hold = asyncio.Barrier(2)
    run = transfer_by_acquire if by_acquire else transfer
    transfers = [
        asyncio.create_task(run(first, second, both_hold), name="transfer-a"),
        asyncio.create_task(run(second, first, both_hold), name="transfer-b"),
    ]
    while len(first._waiters or ()) != 1 or len(second._waiters or ()) != 1:
        await asyncio.sleep(0.01)
    return transfers


async def main() -> None:
    mode = sys.argv[2] if len(sys.argv) > 2 else "now"
    if mode in ("now", "by-acquire"):
        transfers = await deadlock(by_acquire=mode == "by-acquire")
        signal_ready()
    else:
        signal_ready()
        go = WORKDIR / f"go-{os.getpid()}"
        while not go.exists():
            await asyncio.sleep(0.02)
        transfers = await deadlock()
        note("deadlocked")
    await until_stopped()
    for transfer_task in transfers:
        transfer_task.cancel()
    note(f"Lock class has _locked: {'_locked' in asyncio.Lock.__dict__}")
    loop_attributes = vars(asyncio.get_running_loop())
    note(f"loop has call_exception_handler: {'call_exception_handler' in loop_attributes}")


asyncio.run(main())
