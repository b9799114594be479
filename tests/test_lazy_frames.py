"""A look leaves unmade the frame objects it can do without (`chains.lazy_chain`): reading a
suspended coroutine's `cr_frame` makes a frame object that lives as long as the coroutine,
and a coroutine whose code has one place to suspend at is there, told by its code alone.

The walk's key (code and `f_lasti` of every frame) must be what the frames would say, on
every version (the offset is measured against a real frame at import: 3.11-3.12 say the
YIELD_VALUE's own offset, 3.13+ the next instruction's), or stacks would name wrong lines.
"""

from __future__ import annotations

import asyncio
import gc
import re
import types
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from taskscope.agent import chains
from taskscope.agent.awaiting import code_at, frame_at, frames_made
from tests.helpers import agent_snapshot, by_name, notes, wait_for

TARGET = Path(__file__).parent / "targets" / "lazy_frames.py"


def has_frame_object(coro: Any) -> bool:
    """Whether the coroutine has a frame object, asked without making one."""
    return any(type(ref) is types.FrameType for ref in gc.get_referents(coro))


# Coroutines of many shapes, each suspended where the test can name the line ("# here").


async def one_await(gate: asyncio.Event) -> None:
    await gate.wait()  # here


async def in_try_finally(gate: asyncio.Event) -> None:
    try:
        await gate.wait()  # here
    finally:
        pass


async def in_a_loop(gate: asyncio.Event) -> None:
    for _ in range(3):
        await gate.wait()  # here


async def second_of_two(gate: asyncio.Event) -> None:
    await asyncio.sleep(0)
    await gate.wait()  # here


async def in_async_with(lock: asyncio.Lock, gate: asyncio.Event) -> None:
    async with lock:
        await gate.wait()  # here


async def ticks(gate: asyncio.Event) -> AsyncIterator[int]:
    yield 1
    await gate.wait()  # here
    yield 2


async def in_async_for(gate: asyncio.Event) -> None:
    async for _ in ticks(gate):  # here
        pass


async def comprehension(gate: asyncio.Event) -> list[None]:
    return [await gate.wait() for _ in range(2)]  # type: ignore[func-returns-value]  # here


async def nested(gate: asyncio.Event) -> None:
    await one_await(gate)  # here


async def sleeping() -> None:
    await asyncio.sleep(3600)  # here


async def spinning() -> None:
    while True:  # noqa: ASYNC110  (the shape under test: a task suspended in sleep(0))
        await asyncio.sleep(0)  # here


Shape = Callable[[asyncio.Lock, asyncio.Event], Coroutine[Any, Any, Any]]
SHAPES: dict[str, Shape] = {
    "one_await": lambda lock, gate: one_await(gate),
    "in_try_finally": lambda lock, gate: in_try_finally(gate),
    "in_a_loop": lambda lock, gate: in_a_loop(gate),
    "second_of_two": lambda lock, gate: second_of_two(gate),
    "in_async_with": in_async_with,
    "in_async_for": lambda lock, gate: in_async_for(gate),
    "comprehension": lambda lock, gate: comprehension(gate),
    "nested": lambda lock, gate: nested(gate),
    # asyncio.sleep has two awaits, told apart by what it awaits: the future, or __sleep0()
    "sleeping": lambda lock, gate: sleeping(),
    "spinning": lambda lock, gate: spinning(),
}


def marked_lines() -> set[int]:
    return {
        number
        for number, line in enumerate(Path(__file__).read_text().splitlines(), 1)
        if line.rstrip().endswith("# here")
    }


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_walk_without_frames_says_what_the_frames_say(shape: str) -> None:
    assert chains._LASTI_SHIFT is not None, "the offset could not be measured on this Python"

    async def main() -> None:
        lock, gate = asyncio.Lock(), asyncio.Event()
        task = asyncio.create_task(SHAPES[shape](lock, gate))
        for _ in range(3):
            await asyncio.sleep(0)
        coro = task.get_coro()
        # GIVEN the task suspended, WHEN the look's walk goes through its chain
        frames, owners, key = chains.lazy_chain(coro)
        left_unmade = [index for index, frame in enumerate(frames) if frame is None]
        # THEN a coroutine left unmade still has no frame object: nothing read made it
        for index in left_unmade:
            assert not has_frame_object(owners[index]), (shape, index)
        # AND its key is the one the frames give (code and f_lasti, every frame)
        every_frame, _owners, full_key = chains._chain(coro)
        assert key == full_key, (shape, key, full_key)
        # AND the stack made from it names the lines the frames are at
        entry = chains._stack_entry(frames, owners, key)
        assert [line["line"] for line in entry.stack] == [f.f_lineno for f in every_frame]
        assert [line["function"] for line in entry.stack] == [
            f.f_code.co_qualname for f in every_frame
        ]
        assert entry.stack[0]["line"] in marked_lines() or shape == "in_async_with"
        # AND a frame asked for later is made then, and is the coroutine's own
        for index in left_unmade:
            assert code_at(frames, owners, index) is owners[index].cr_code
            assert frame_at(frames, owners, index) is owners[index].cr_frame
        assert frames_made(frames, owners) == every_frame
        gate.set()
        if lock.locked():
            lock.release()
        task.cancel()

    asyncio.run(main())


def test_one_place_to_suspend_is_told_by_the_code_and_several_by_the_frame() -> None:
    async def main() -> None:
        lock, gate = asyncio.Lock(), asyncio.Event()
        single = asyncio.create_task(one_await(gate))
        two = asyncio.create_task(second_of_two(gate))
        for _ in range(3):
            await asyncio.sleep(0)
        frames, _owners, _key = chains.lazy_chain(single.get_coro())
        # one_await (one await) and Event.wait (one await): no frame made
        assert frames == [None, None], frames
        frames, _owners, _key = chains.lazy_chain(two.get_coro())
        # second_of_two has two awaits: its frame is read; Event.wait's is not
        assert frames[0] is not None and frames[1] is None, frames
        # asyncio.sleep (two awaits) is told where it is by what it awaits: no frame either
        sleeper = asyncio.create_task(sleeping())
        await asyncio.sleep(0)
        frames, _owners, _key = chains.lazy_chain(sleeper.get_coro())
        assert frames == [None, None], frames
        sleeper.cancel()
        gate.set()
        await asyncio.gather(single, two)
        del lock

    asyncio.run(main())


def test_a_look_at_a_real_process_makes_no_frame_it_can_do_without(start: Any) -> None:
    # GIVEN a program with tasks in coroutines of one await (five on one Event, three on one
    # Queue) and of two, the agent in it
    target = start(str(TARGET.name)).wait_ready()
    # WHEN the agent looks (its stacks and descriptions as always)
    snap = by_name(agent_snapshot(target.pid))
    source = TARGET.read_text().splitlines()
    for number in range(5):
        single = snap[f"single-{number}"]
        assert [frame["function"] for frame in single["stack"]] == ["single", "Event.wait"]
        assert "await never.wait()" in source[single["stack"][0]["line"] - 1]
        # (`several` calls its own Event `never` too: the two are lettered)
        assert re.fullmatch(
            r"Event\.wait on never \(Event [AB], not set, 5 waiting\)", single["awaiting"]["text"]
        ), single
    for number in range(3):
        assert snap[f"getter-{number}"]["awaiting"]["text"] == "Queue.get on jobs (0 items)"
    assert snap["several"]["awaiting"]["text"].startswith("Event.wait")
    # THEN the program's coroutines of one await have no frame object, but for the first
    # task found on each shared object (its frames were read to name the object); those of
    # two awaits have theirs
    target.file(f"check-{target.pid}").write_text("check")
    wait_for(lambda: "getter-2:" in notes(target), what="the program's check")
    made = dict(re.findall(r"([\w-]+): frames (\d+ of \d+)", notes(target)))
    singles = [made[f"single-{number}"] for number in range(5)]
    getters = [made[f"getter-{number}"] for number in range(3)]
    assert singles.count("0 of 2") >= 4, notes(target)
    assert getters.count("0 of 2") >= 2, notes(target)
    assert made["several"] in ("1 of 2", "2 of 2"), notes(target)
