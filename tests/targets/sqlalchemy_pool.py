"""SQLAlchemy's asyncio engine on aiosqlite with a pool of one connection and no overflow: the
task `holder` has it, in a query that calls a slow Python function (until the program stops),
and `checkout` waits for it (its greenlet in `QueuePool._do_get`). Signals ready once both
wait."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from target_kit import WORKDIR, signal_ready, until_stopped

release = threading.Event()
running = threading.Event()


def slow_step(value: int) -> int:
    running.set()
    release.wait(600)
    return value


async def query(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT slow_step(1)"))


async def main() -> None:
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{WORKDIR / 'pool.sqlite'}",
        poolclass=AsyncAdaptedQueuePool,
        pool_size=1,
        max_overflow=0,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.create_function("slow_step", 1, slow_step)

    holder = asyncio.create_task(query(engine), name="holder")
    while not running.is_set():
        await asyncio.sleep(0.01)
    checkout = asyncio.create_task(query(engine), name="checkout")
    await asyncio.sleep(0.2)
    signal_ready()
    await until_stopped()
    release.set()
    await asyncio.gather(holder, checkout, return_exceptions=True)
    await engine.dispose()


asyncio.run(main())
