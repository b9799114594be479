"""A program that forks, as servers do: once before any loop runs, then from inside its loop
(argv[2] == "loop"), and again whenever a `fork-PID` file appears in its working directory;
an `exec-PID` file makes it exec another program.
The forks' pids are noted; each child sleeps, holding the parent's descriptors, until killed
(or exits at once with argv[3] == "exit")."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from target_kit import WORKDIR, note, signal_ready, until_stopped

CHILD_EXITS = len(sys.argv) > 3 and sys.argv[3] == "exit"


def fork_child() -> int:
    pid = os.fork()
    if pid == 0:
        if not CHILD_EXITS:
            time.sleep(60)
        os._exit(0)
    note(f"forked {pid}")
    if CHILD_EXITS:
        os.waitpid(pid, 0)
    return pid


async def ticker() -> None:
    request = WORKDIR / f"fork-{os.getpid()}"
    while True:
        await asyncio.sleep(0.05)
        if request.exists():
            request.unlink()
            fork_child()
        if (WORKDIR / f"exec-{os.getpid()}").exists():  # become another program, same pid
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(30)"])


async def main() -> None:
    asyncio.create_task(ticker(), name="ticker")
    if len(sys.argv) > 2 and sys.argv[2] == "loop":
        await asyncio.sleep(0.1)
        fork_child()
        await asyncio.sleep(0.3)  # the agent comes back at the loop's next turns
    signal_ready()
    await until_stopped()


fork_child()
asyncio.run(main())
print("done")
