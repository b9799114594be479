"""The program `benchmarks/recording.py` records: a server-like population of long-lived tasks
and a steady churn of short requests, so that the recording holds real deltas.

    python recording_target.py TASKS CHURN READY

TASKS long-lived tasks (sleeping, waiting on a queue, a lock, an event four coroutines deep,
in TaskGroups; one in a hundred waking twice a second), and CHURN short "requests" a second,
each living 0.2-2 s through two awaits (a sleep, then a queue round trip), so tasks appear,
move, finish and leave the history. `taskscope.install()` runs first (as `taskscope run`
does); READY gets "ready" once the tasks are up. Runs until killed.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from host_cost_target import population


async def request(number: int, replies: asyncio.Queue[int]) -> int:
    await asyncio.sleep(random.uniform(0.1, 1.0))
    await replies.put(number)
    await asyncio.sleep(random.uniform(0.1, 1.0))
    return await replies.get()


async def main(size: int, churn: int, ready: str) -> None:
    tasks = await population(size)
    replies: asyncio.Queue[int] = asyncio.Queue()
    Path(ready).write_text("ready")  # noqa: ASYNC240 - once, before the run
    number = 0
    in_flight: set[asyncio.Task[Any]] = set()
    while True:
        for _ in range(max(1, churn // 10)):
            number += 1
            task = asyncio.create_task(request(number, replies), name=f"request-{number}")
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.sleep(0.1)
    del tasks


if __name__ == "__main__":
    import taskscope

    taskscope.install()
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
