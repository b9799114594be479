"""For the flight recorder: a task `worker` that finishes and a task `doomed` that fails when
the test drops a `finish-PID` file (after it saw them pending in the recorder), then a note
`finished-PID`. Runs until stopped."""

from __future__ import annotations

import asyncio
import os

from target_kit import WORKDIR, signal_ready, stop_requested


async def wait_for_finish() -> None:
    while not (WORKDIR / f"finish-{os.getpid()}").exists() and not stop_requested():
        await asyncio.sleep(0.02)


async def worker() -> str:
    await wait_for_finish()
    return "done"


async def doomed() -> None:
    await wait_for_finish()
    raise RuntimeError("doomed failed")


async def main() -> None:
    tasks = [
        asyncio.create_task(worker(), name="worker"),
        asyncio.create_task(doomed(), name="doomed"),
    ]
    signal_ready()
    await asyncio.gather(*tasks, return_exceptions=True)
    (WORKDIR / f"finished-{os.getpid()}").write_text("ok")
    while not stop_requested():
        await asyncio.sleep(0.05)


asyncio.run(main())
