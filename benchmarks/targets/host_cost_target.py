"""The host program of `benchmarks/host_cost.py`: many asyncio tasks and a probe that times the
loop's pauses, with or without the taskscope agent. Standard library only when run without it.

    python host_cost_target.py loop TASKS AGENT READY OUT    pauses and collections until SIGUSR1
    python host_cost_target.py memory TASKS AGENT            bytes kept, and the cost of a look
    python host_cost_target.py churn COUNT AGENT ROUNDS      no-op task churn, seconds per task

AGENT is `none` (no agent: the baseline) or `agent` (`taskscope.install()` before the tasks,
creators and history tracked, as `taskscope run` does) or `flight` (the same, with the flight
recorder keeping the last 60 s). `loop` writes "ready" to READY once its
tasks are up, and on SIGUSR1 writes what it measured to OUT as JSON: every probe pause and every
garbage collection, with `time.monotonic()` times (one clock for every process of the machine),
so that the driver can cut them into its own windows. The other modes print one JSON line.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from population import population as shared_population

#: The probe sleeps this long, over and over; a pause is how long one such sleep took.
PROBE_SLEEP = 0.002
#: One task in a hundred wakes twice a second (a server's busy connections); the rest wait.
WAKER_SHARE = 100


async def population(size: int) -> list[asyncio.Task[Any]]:
    """The benchmarks' mix of tasks (targets/population.py), one in a hundred waking twice a
    second."""
    return await shared_population(
        size, owner_every=1000, waker_every=WAKER_SHARE, yield_every=5000, settle=0.1
    )


def install_agent(agent: str) -> None:
    if agent == "agent":
        import taskscope

        taskscope.install()
    elif agent == "flight":
        import taskscope

        taskscope.install(flight_recorder=60)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class GcLog:
    """Every collection the host's garbage collector runs: when, which generation, how long."""

    def __init__(self) -> None:
        self.events: list[tuple[float, int, float]] = []
        #: len(events) after each look (see run_memory).
        self.marks: list[int] = []
        self._started = 0.0

    def first_after(self, look: int) -> int:
        return self.marks[look - 1] if len(self.marks) >= look else len(self.events)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.monotonic()
        else:
            now = time.monotonic()
            self.events.append(
                (self._started, int(info.get("generation", -1)), now - self._started)
            )


async def run_loop(size: int, agent: str, ready_file: str, out_file: str) -> None:
    install_agent(agent)
    tasks = await population(size)
    pauses: list[tuple[float, float]] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stop.set)
    log = GcLog()
    gc.callbacks.append(log)

    async def probe() -> None:
        clock, sleep = time.monotonic, asyncio.sleep
        while True:
            started = clock()
            await sleep(PROBE_SLEEP)
            pauses.append((started, clock() - started))

    probe_task = asyncio.create_task(probe())
    Path(ready_file).write_text(str(len(asyncio.all_tasks())))  # noqa: ASYNC240
    await stop.wait()
    gc.callbacks.remove(log)
    probe_task.cancel()
    measured = {"pauses": pauses, "gc": log.events, "tasks": len(tasks), "rss": rss_bytes()}
    Path(out_file).write_text(json.dumps(measured))  # noqa: ASYNC240
    os._exit(0)  # 100,000 tasks need not be cancelled one by one


async def run_memory(size: int, agent: str, traced: bool) -> dict[str, Any]:
    """Memory kept between looks: taken after two looks (a `dump` over the compact encoding,
    as `taskscope dump` asks for it), once everything of the looks but what the agent keeps
    is gone. With `traced`, by tracemalloc (started before the tasks, in both modes); without,
    the resident size, and the agent thread's CPU time for a third look."""
    if traced:
        import tracemalloc

        tracemalloc.start()
    install_agent(agent)
    tasks = await population(size)
    gc.collect()
    result: dict[str, Any] = {"tasks": len(asyncio.all_tasks()), "rss_before_look": rss_bytes()}
    if agent == "agent":
        from taskscope.agent import _state
        from taskscope.agent.introspect import SnapshotBuilder
        from taskscope.protocol import CompactEncoder

        server = _state["server"]

        def look() -> float:
            # What the server does for a compact `snapshot` request (without its reuse of a
            # snapshot built a moment ago, which would hide the cost).
            started = time.thread_time()
            snapshot = SnapshotBuilder(server.tracker).build_raw(True)
            message = {"type": "snapshot", "snapshot": snapshot}
            CompactEncoder(server.tables).encode(message)
            return time.thread_time() - started

        times: list[float] = []
        log = GcLog()
        gc.callbacks.append(log)
        for _ in range(2 if traced else 4):
            # On a thread of its own, as the agent's, while the loop goes on.
            thread = threading.Thread(target=lambda: times.append(look()))
            thread.start()
            await asyncio.to_thread(thread.join)
            log.marks.append(len(log.events))
        gc.callbacks.remove(log)
        result["first_look_cpu"] = times[0]
        result["look_cpu"] = min(times[1:])
        # The collector's time during the looks after the first, per look (any thread).
        later = log.events[log.first_after(1) :] if not traced else []
        result["look_gc"] = sum(duration for _t, _gen, duration in later) / max(1, len(times) - 1)
    gc.collect()
    if traced:
        import tracemalloc

        result["traced"] = tracemalloc.get_traced_memory()[0]
    result["rss"] = rss_bytes()
    result["live"] = len(tasks)
    return result


async def run_churn(count: int, agent: str, rounds: int) -> dict[str, Any]:
    install_agent(agent)

    async def noop() -> None:
        await asyncio.sleep(0)

    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        await asyncio.gather(*[asyncio.create_task(noop()) for _ in range(count)])
        best = min(best, (time.perf_counter() - started) / count)
    return {"per_task": best}


def main() -> None:
    mode = sys.argv[1]
    size = int(sys.argv[2])
    agent = sys.argv[3]
    if mode == "loop":
        asyncio.run(run_loop(size, agent, sys.argv[4], sys.argv[5]))
    elif mode == "memory":
        print(json.dumps(asyncio.run(run_memory(size, agent, sys.argv[4] == "traced"))))
        sys.stdout.flush()
        os._exit(0)
    elif mode == "churn":
        print(json.dumps(asyncio.run(run_churn(size, agent, int(sys.argv[4])))))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
