"""An app that installs eager tasks (3.12+) after the agent: the factory must keep working."""

from __future__ import annotations

import asyncio
import sys

from target_kit import signal_ready, until_stopped


async def quick() -> str:
    return "quick"


async def main() -> None:
    loop = asyncio.get_running_loop()
    factory = getattr(asyncio, "eager_task_factory", None)
    if factory is not None:
        loop.set_task_factory(factory)
    print("factory kept:", loop.get_task_factory() is factory)
    task = asyncio.create_task(quick(), name="eager-quick")
    # An eager task that finishes in its first step is done before create_task returns.
    print("done at once:", task.done() if factory is not None else "n/a")
    asyncio.create_task(asyncio.sleep(3600), name="eager-sleeper")
    signal_ready()
    await until_stopped()


asyncio.run(main())
sys.exit(0)
