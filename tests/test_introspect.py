"""Unit tests of the snapshot builder's graph helpers: `find_cycles` (await cycles) and
`_resolve_waiters` (who waits on a future), on hand-made graphs and real asyncio objects."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from taskscope.agent.chains import walk_frames
from taskscope.agent.cycles import find_cycles
from taskscope.agent.waiters import _resolve_waiters

# --- find_cycles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edges", "cycles"),
    [
        ({}, []),
        ({1: [2], 2: [3]}, []),  # a chain
        ({1: [2, 3], 2: [4], 3: [4]}, []),  # a diamond is no cycle
        ({1: [2], 2: [1]}, [[1, 2]]),
        ({5: [6], 6: [7], 7: [5], 8: [5]}, [[5, 6, 7]]),  # a waiter outside the cycle
        ({1: [2], 2: [1], 3: [4], 4: [3]}, [[1, 2], [3, 4]]),
        ({1: [1]}, []),  # a lone task is not a cycle of tasks
        ({1: [2, 3], 2: [1], 3: [4], 4: [3]}, [[1, 2], [3, 4]]),
        ({1: [99]}, []),  # an edge to a task with no edges of its own
        # owners awaiting leaves, and a cycle reached only through tasks on no cycle
        ({1: [2, 3], 4: [5, 6], 7: [8], 8: [9], 9: [10, 8], 11: [7]}, [[8, 9]]),
        ({1: [2], 2: [3], 3: [2, 4], 4: [1]}, [[1, 2, 3, 4]]),  # every task both sides
    ],
)
def test_find_cycles(edges: dict[int, list[int]], cycles: list[list[int]]) -> None:
    assert find_cycles(edges) == cycles


def test_find_cycles_walks_only_tasks_that_both_await_and_are_awaited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a server's await graph: 1,000 owners awaiting 9 tasks each that await none
    from taskscope.agent import cycles

    edges = {owner: [owner * 10 + child for child in range(10)] for owner in range(1000, 2000)}
    walked: list[int] = []
    walk = cycles.strongly_connected

    def counting(graph: Any) -> Any:
        walked.append(len(graph))
        return walk(graph)

    monkeypatch.setattr(cycles, "strongly_connected", counting)
    # WHEN looking for cycles THEN there are none, found without walking the graph
    assert find_cycles(edges) == []
    assert walked == []
    # AND a cycle among them is walked alone
    edges[50000] = [50001]
    edges[50001] = [50000]
    edges[1007] = [*edges[1007], 50000]
    assert find_cycles(edges) == [[50000, 50001]]
    assert walked == [2]


def test_find_cycles_on_a_long_chain_does_not_recurse() -> None:
    # GIVEN 100,000 tasks each awaiting the next, the last awaiting the first
    count = 100_000
    edges = {number: [number + 1] for number in range(count - 1)}
    edges[count - 1] = [0]
    # WHEN looking for cycles THEN there is one, and no RecursionError
    assert find_cycles(edges) == [list(range(count))]


# --- _resolve_waiters -----------------------------------------------------------------------


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_direct_waiter() -> None:
    async def scenario() -> None:
        fut = asyncio.get_running_loop().create_future()
        waiter = asyncio.create_task(asyncio.wait_for(fut, None))
        idle = asyncio.get_running_loop().create_future()
        await _settle()
        assert _resolve_waiters(fut) == [waiter]
        assert _resolve_waiters(idle) == []
        waiter.cancel()

    _run(scenario())


def test_an_ignored_callback_is_not_looked_into() -> None:
    # GIVEN a future with a closure callback over a future a task awaits (as gather's)
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fut, inner = loop.create_future(), loop.create_future()
        waiter = asyncio.create_task(asyncio.wait_for(inner, None))
        await _settle()

        def chained(done: Any) -> None:
            inner.set_result(done)

        fut.add_done_callback(chained)
        # THEN it leads to the task, unless it is the callback to ignore (the agent's own)
        assert _resolve_waiters(fut) == [waiter]
        assert _resolve_waiters(fut, ignore=chained) == []
        waiter.cancel()

    _run(scenario())


def test_nested_gather_reaches_the_outer_task() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        leaf = loop.create_future()
        other = loop.create_future()

        async def outer() -> None:
            await asyncio.gather(asyncio.gather(leaf, other), loop.create_future())

        waiter = asyncio.create_task(outer())
        await _settle()
        assert _resolve_waiters(leaf) == [waiter]
        waiter.cancel()

    _run(scenario())


def test_shield_and_wait_reach_the_task() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        shielded, waited = loop.create_future(), loop.create_future()

        async def shield_it() -> None:
            await asyncio.shield(shielded)

        async def wait_it() -> None:
            await asyncio.wait({waited})

        shielder = asyncio.create_task(shield_it())
        waiter = asyncio.create_task(wait_it())
        await _settle()
        assert _resolve_waiters(shielded) == [shielder]
        assert _resolve_waiters(waited) == [waiter]
        # the shield's outer future does not count its inner one as a waiter
        (outer,) = [shielder._fut_waiter]  # type: ignore[attr-defined]
        assert _resolve_waiters(outer) == [shielder]
        shielder.cancel()
        waiter.cancel()

    _run(scenario())


def test_chained_futures_in_a_loop_terminate() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        first.add_done_callback(functools.partial(lambda other, _fut: None, second))
        second.add_done_callback(functools.partial(lambda other, _fut: None, first))
        assert _resolve_waiters(first) == []

    _run(scenario())


class _Booby:
    """A callable whose attributes must never be read by the agent."""

    touched = False

    def __call__(self, fut: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        type(self).touched = True
        raise AttributeError(name)

    @property
    def __self__(self) -> Any:
        type(self).touched = True
        raise RuntimeError("application code ran")


def test_unknown_callbacks_are_not_inspected() -> None:
    async def scenario() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_Booby())
        assert _resolve_waiters(fut) == []
        assert not _Booby.touched

    _run(scenario())


def test_walk_frames_through_async_generator_and_generator() -> None:
    async def scenario() -> None:
        parked = asyncio.get_running_loop().create_future()

        class Window:
            def __await__(self) -> Any:
                return (yield from parked)

        async def ticks() -> Any:
            await Window()
            yield 1

        async def consumer() -> None:
            async for _ in ticks():
                pass

        task = asyncio.create_task(consumer())
        await _settle()
        frames = walk_frames(task.get_coro())
        assert [frame.f_code.co_name for frame in frames] == ["consumer", "ticks", "__await__"]
        task.cancel()

    _run(scenario())
