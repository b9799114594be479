"""aiosqlite: one connection whose own thread runs a query calling a slow Python function
(`query`, until the program stops), and a second query on that connection queued behind it
(`queued`). Signals ready once both wait."""

from __future__ import annotations

import asyncio
import threading

import aiosqlite
from target_kit import signal_ready, until_stopped

release = threading.Event()
running = threading.Event()


def slow_step(value: int) -> int:
    running.set()
    release.wait(600)
    return value


async def run(db: aiosqlite.Connection, sql: str) -> None:
    async with db.execute(sql) as cursor:
        await cursor.fetchall()


async def main() -> None:
    async with aiosqlite.connect(":memory:") as db:
        await db.create_function("slow_step", 1, slow_step)
        query = asyncio.create_task(run(db, "SELECT slow_step(1)"), name="query")
        while not running.is_set():
            await asyncio.sleep(0.01)
        queued = asyncio.create_task(run(db, "SELECT 2"), name="queued")
        await asyncio.sleep(0.1)
        signal_ready()
        await until_stopped()
        release.set()
        await asyncio.gather(query, queued)


asyncio.run(main())
