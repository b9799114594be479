"""Tasks made before the agent came (`taskscope.install()` called once they exist), so none
has a creation time the agent saw: twelve `worker-N` tasks made in a scrambled order.

    older_than_agent.py WORKDIR
"""

from __future__ import annotations

import asyncio

from target_kit import signal_ready, until_stopped

import taskscope

SCRAMBLED = (7, 10, 2, 12, 1, 9, 4, 11, 3, 8, 6, 5)


async def worker() -> None:
    await asyncio.sleep(3600)


async def main() -> None:
    workers = [asyncio.create_task(worker(), name=f"worker-{n}") for n in SCRAMBLED]
    await asyncio.sleep(0)
    taskscope.install()
    signal_ready()
    await until_stopped()
    for task in workers:
        task.cancel()


asyncio.run(main(), debug=False)
