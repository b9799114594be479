"""Failed tasks, each retrieved or not in its own way:
- `orphan`: nobody awaits it; main keeps it referenced until stopped, then lets it go (asyncio
  then prints "Task exception was never retrieved");
- `dropped`: nobody awaits it nor keeps it: collected as soon as it fails (asyncio prints the
  same at once);
- `awaited-failure`: awaited by main;
- `gathered-failure`: gathered with return_exceptions=True, then let go.
argv[2] "now" (default): they fail, then the target says it is ready; "on-go": it says so
first, and starts them when a `go-PID` file appears, noting "all failed" after."""

from __future__ import annotations

import asyncio
import os
import sys

from target_kit import WORKDIR, note, signal_ready, until_stopped


def parse_row(row: str) -> int:
    return int(row)  # the raising line


async def orphan_job() -> None:
    await asyncio.sleep(0)
    parse_row("not a number")


async def dropped_job() -> None:
    await asyncio.sleep(0)
    raise RuntimeError("dropped on the floor")


async def awaited_job() -> None:
    await asyncio.sleep(0)
    raise KeyError("missing")


async def gathered_job() -> None:
    await asyncio.sleep(0)
    try:
        {}["key"]
    except KeyError as error:
        raise LookupError("while looking up") from error


async def fail_all() -> asyncio.Task[None]:
    orphan = asyncio.create_task(orphan_job(), name="orphan")
    asyncio.create_task(dropped_job(), name="dropped")
    try:
        await asyncio.create_task(awaited_job(), name="awaited-failure")
    except KeyError:
        note("awaited-failure raised KeyError")
    results = await asyncio.gather(
        asyncio.create_task(gathered_job(), name="gathered-failure"), return_exceptions=True
    )
    note(f"gathered {type(results[0]).__name__}")
    while not orphan.done():
        await asyncio.sleep(0.01)
    return orphan


async def main() -> None:
    if len(sys.argv) > 2 and sys.argv[2] == "on-go":
        signal_ready()
        go = WORKDIR / f"go-{os.getpid()}"
        while not go.exists():
            await asyncio.sleep(0.02)
        orphan = await fail_all()
        note("all failed")
    else:
        orphan = await fail_all()
        signal_ready()
    await until_stopped()
    del orphan  # its "Task exception was never retrieved" comes now


asyncio.run(main())
