"""The monitored program for benchmarks/vs_aiomonitor.py: one fresh process per measurement.

Run by the driver, never by hand (though it works: it talks JSON lines on stdout and reads
one-word commands on stdin). It installs exactly one tool, or none, then runs one workload:

  churn       create and await short tasks in gather batches; print seconds per task
  population  keep N live tasks (a mix of sleepers, queue/lock waiters, nested chains, gather
              and TaskGroup owners) on an idle loop until told to quit
  block       a victim task sleeps; on "go" the loop is blocked with time.sleep(BLOCK)

Tools: none | taskscope | aiomonitor-import (imported, not started) | aiomonitor
(`start_monitor(loop)`) | aiomonitor-hook (`start_monitor(loop, hook_task_factory=True)`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from population import population as population_mix

BLOCK_SECONDS = 5.0


def say(**message: Any) -> None:
    """One JSON line to the driver."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def next_command() -> str:
    """The next line on stdin, read without blocking the loop (selector loops only)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def readable() -> None:
        loop.remove_reader(sys.stdin.fileno())
        if not future.done():
            future.set_result(sys.stdin.readline().strip())

    loop.add_reader(sys.stdin.fileno(), readable)
    return await future


def start_tool(tool: str, loop: asyncio.AbstractEventLoop, ports: list[int]) -> Any:
    """Install the tool the way its documentation says; returns whatever must stay alive."""
    if tool == "none":
        return None
    if tool == "taskscope":
        import taskscope

        taskscope.install()
        return None
    if tool == "taskscope-light":
        import taskscope

        taskscope.install(track_tasks=False)
        return None
    if tool == "taskscope-timed":
        import taskscope

        taskscope.install(time_steps=True)
        return None
    if tool.startswith("aiomonitor"):
        import aiomonitor

        if tool == "aiomonitor-import":
            return None
        return aiomonitor.start_monitor(
            loop,
            port=ports[0],
            webui_port=ports[1],
            console_port=ports[2],
            hook_task_factory=(tool == "aiomonitor-hook"),
        )
    raise SystemExit(f"unknown tool {tool}")


async def eager_probe(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """Whether create_task still runs the coroutine's first step at once (eager tasks)."""
    ran: list[int] = []

    async def probe() -> None:
        ran.append(1)

    task = asyncio.create_task(probe())
    kept = bool(ran)
    await task
    factory = loop.get_task_factory()
    return {
        "eager_kept": kept,
        "factory": getattr(factory, "__qualname__", repr(factory)),
    }


async def short() -> None:
    await asyncio.sleep(0)


async def churn_once(count: int, batch: int) -> float:
    """Seconds per task for `count` tasks created and awaited in gather batches."""
    create_task = asyncio.create_task
    started = time.perf_counter()
    for _ in range(count // batch):
        await asyncio.gather(*[create_task(short()) for _ in range(batch)])
    return (time.perf_counter() - started) / (count // batch * batch)


async def churn(args: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
    say(ready=True, **(await eager_probe(loop)))
    if args.wait_go:
        await next_command()
    await churn_once(max(args.batch, args.count // 10), args.batch)  # warm-up
    rounds = [await churn_once(args.count, args.batch) for _ in range(args.rounds)]
    say(rounds=rounds)


async def make_population(size: int) -> list[asyncio.Task[Any]]:
    return await population_mix(size, gather_owners=True, owners_count_children=True, settle=0.1)


async def population(args: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
    tasks = await make_population(args.count)
    say(ready=True, live=len(asyncio.all_tasks()))
    await next_command()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def block(args: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
    outcome: dict[str, Any] = {}

    async def victim() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            outcome["cancelled_at"] = time.monotonic()
            raise

    task = asyncio.create_task(victim(), name="victim")
    await asyncio.sleep(0.1)
    say(ready=True, aiomonitor_id=str(id(task)))
    await next_command()
    unblocked = time.monotonic() + BLOCK_SECONDS
    say(blocking=True)
    time.sleep(BLOCK_SECONDS)  # noqa: ASYNC251 - the point of this workload
    await asyncio.sleep(0.5)
    cancelled_at = outcome.get("cancelled_at")
    say(
        victim_cancelled=task.cancelled(),
        cancelled_after_unblock=(
            None if cancelled_at is None else round(cancelled_at - unblocked, 3)
        ),
    )
    await next_command()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["churn", "population", "block"])
    parser.add_argument("--tool", default="none")
    parser.add_argument("--eager", action="store_true")
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wait-go", action="store_true")
    parser.add_argument("--ports", type=lambda s: [int(p) for p in s.split(",")], default=[0])
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if args.eager:
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    monitor = start_tool(args.tool, loop, args.ports)
    workload = {"churn": churn, "population": population, "block": block}[args.mode]
    try:
        loop.run_until_complete(workload(args, loop))
    finally:
        if monitor is not None:
            monitor.close()
        loop.close()


if __name__ == "__main__":
    main()
