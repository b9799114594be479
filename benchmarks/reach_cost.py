"""What the agent's reach step (taskscope/agent/reach.py: the `unreferenced` and
`never_woken` facts) adds to a look, where it costs most: every task waiting on an Event of
its own, so that every cluster is small enough to be judged (tasks crowding on one object,
as in benchmarks/snapshot.py's population, are left unjudged at once).

Run: python benchmarks/reach_cost.py [--size 10000] [--repeat 5]

Per look, on the agent's thread (CPU time, best of `repeat`), with the step and without it
(the same tasks, looks interleaved):

- first: the first look at the tasks (every task judged, within the step's budget);
- later: a look within `SCAN_PERIOD` of the last scan (the marks kept: most looks);
- scan: the look every `SCAN_PERIOD` seconds that scans the waiting tasks, within
  `RECHECK` seconds of the last verdicts (kept);
- recheck: a scan once every verdict is due again (every task judged again, within budget);

and how many tasks the recheck look judged (the budget cuts it short at large sizes).
Half the tasks' events are held by a list (judged reachable), half by nothing but the
waiting task (judged never woken).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from typing import Any

from taskscope.agent import introspect, reach
from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import Tracker


async def wait_on(event: asyncio.Event) -> None:
    await event.wait()


def timed_look(builder: SnapshotBuilder, with_step: bool) -> float:
    """One look on a thread of its own, as the agent's: its CPU time."""
    spent = [0.0]
    saved = introspect._mark_reach

    def work() -> None:
        if not with_step:
            introspect._mark_reach = lambda *args, **kwargs: None  # type: ignore[assignment]
        try:
            started = time.thread_time()
            builder.build_raw()
            spent[0] = time.thread_time() - started
        finally:
            introspect._mark_reach = saved

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return spent[0]


def expire(tracker: Tracker, verdicts: bool) -> None:
    """Makes the next look scan (as one does every SCAN_PERIOD), with every verdict due
    again when `verdicts`."""
    state = introspect._REACH_STATES.get(tracker)
    if state is None:
        return
    state.scanned_at = None
    if verdicts:
        for verdict in state.verdicts.values():
            verdict.checked_at -= reach.RECHECK + 1


async def measure(size: int, repeat: int) -> dict[str, Any]:
    tracker = Tracker()
    tracker.install()
    held = [asyncio.Event() for _ in range(size // 2)]
    tasks = [asyncio.create_task(wait_on(event)) for event in held]
    tasks += [asyncio.create_task(wait_on(asyncio.Event())) for _ in range(size - len(held))]
    await asyncio.sleep(0.05)
    results: dict[str, list[float]] = {}
    judged = 0
    for _ in range(repeat):
        for with_step in (False, True):
            label = "with" if with_step else "without"
            introspect._REACH_STATES.pop(tracker, None)
            builder = SnapshotBuilder(tracker)
            # A first look (the builder's caches and the verdicts made from nothing).
            first = await asyncio.to_thread(timed_look, builder, with_step)
            later = await asyncio.to_thread(timed_look, builder, with_step)
            expire(tracker, verdicts=False)
            scan = await asyncio.to_thread(timed_look, builder, with_step)
            expire(tracker, verdicts=True)
            recheck = await asyncio.to_thread(timed_look, builder, with_step)
            if with_step:
                state = introspect._REACH_STATES[tracker]
                now = time.monotonic()
                judged = sum(1 for v in state.verdicts.values() if now - v.checked_at < 1)
            looks = (("first", first), ("later", later), ("scan", scan), ("recheck", recheck))
            for key, value in looks:
                results.setdefault(f"{key} {label}", []).append(value)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tracker.uninstall()
    return {"best": {key: min(values) for key, values in results.items()}, "judged": judged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(measure(args.size, args.repeat))
    best = result["best"]
    print(f"Python {sys.version.split()[0]}; {args.size} tasks; best of {args.repeat}; ms per look")
    print("  look      without  with    added")
    for key in ("first", "later", "scan", "recheck"):
        without, with_step = best[f"{key} without"] * 1e3, best[f"{key} with"] * 1e3
        print(f"  {key:8}  {without:7.2f}  {with_step:6.2f}  {with_step - without:+6.2f}")
    print(f"  tasks judged in the recheck look: {result['judged']} of {args.size}")


if __name__ == "__main__":
    main()
