"""Creation chains where the agent's tree of chain sites (keyed by instruction offsets, see
`taskscope.agent.tracker._SiteNode`) is put to the test: two functions calling create_task at
the same offset, asyncio's own code between two of the program's frames, and many tasks made
alternately at each place. Run in-process with the agent installed, read by a snapshot."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import Tracker
from tests.helpers import by_name


async def _idle() -> None:
    await asyncio.sleep(10)


def make_a(name: str) -> asyncio.Task[None]:
    return asyncio.create_task(_idle(), name=name)


def make_b(name: str) -> asyncio.Task[None]:  # the same code as make_a: the same offsets
    return asyncio.create_task(_idle(), name=name)


async def _inner(name: str) -> asyncio.Task[None]:
    return make_a(name)


def _functions(task: dict[str, Any]) -> list[str]:
    return [frame["function"] for frame in task["created_from"]]


def test_chains_stay_apart_when_two_functions_create_at_one_offset() -> None:
    # GIVEN a program making tasks alternately from two functions of identical code (each
    # calls create_task at the same instruction offset), and from a coroutine run through
    # asyncio.wait_for (asyncio's frame between two of the program's)
    tracker = Tracker()
    tracker.install()

    async def main() -> tuple[dict[str, Any], list[bool]]:
        made: list[asyncio.Task[None]] = []
        for round_ in range(3):
            made.append(make_a(f"a{round_}"))
            made.append(make_b(f"b{round_}"))
            made.append(await asyncio.wait_for(_inner(f"w{round_}"), 5))
        snap = await asyncio.to_thread(SnapshotBuilder(tracker).build)
        sites = [tracker.meta_of(task).created_from for task in made]  # type: ignore[union-attr]
        shared = [sites[index] is sites[index % 3] for index in range(len(sites))]
        for task in made:
            task.cancel()
        return snap, shared

    try:
        snap, shared = asyncio.run(main())
    finally:
        tracker.uninstall()
    tasks = by_name(snap)
    prefix = "test_chains_stay_apart_when_two_functions_create_at_one_offset.<locals>."
    for round_ in range(3):
        # THEN each task's chain names the function that made it, then main, every round
        assert _functions(tasks[f"a{round_}"]) == ["make_a", f"{prefix}main"]
        assert _functions(tasks[f"b{round_}"]) == ["make_b", f"{prefix}main"]
        # AND asyncio.wait_for's frame is skipped between _inner and main (3.11's wait_for
        # runs the coroutine in a task of its own: the chain ends where that task began)
        through = [f"{prefix}main"] if sys.version_info >= (3, 12) else []
        assert _functions(tasks[f"w{round_}"]) == ["make_a", "_inner", *through]
    # AND tasks made at one place share one chain
    assert all(shared)
    lines = {
        name: [frame["line"] for frame in tasks[name]["created_from"]] for name in ("a0", "b0")
    }
    assert lines["a0"][0] != lines["b0"][0]
