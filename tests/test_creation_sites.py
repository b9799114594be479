"""Creation chains where the agent's tree of chain sites (keyed by instruction offsets, see
`taskscope.agent.tracker._SiteNode`) is put to the test: two functions calling create_task at
the same offset, asyncio's own code between two of the program's frames, and many tasks made
alternately at each place. Run in-process with the agent installed, read by a snapshot."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import CREATION_DEPTH, Tracker
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


#: Where a chain stops: the loop's machinery that ran the creating step or callback.
_HANDLE_RUN = asyncio.events.Handle._run.__code__
_ASYNCIO_DIR = asyncio.__file__.rsplit("/", 1)[0] + "/"


def _walked_by_hand(frame: Any) -> list[tuple[str, int]]:
    """The chain a task made in `frame` should get, by the rule written out frame by frame
    (with f_back): the program's frames outwards, asyncio's passed, at most CREATION_DEPTH,
    up to the loop's Handle._run or a module's top level."""
    chain: list[tuple[str, int]] = []
    while frame is not None and len(chain) < CREATION_DEPTH:
        code = frame.f_code
        if code is _HANDLE_RUN:
            break
        if not code.co_filename.startswith(_ASYNCIO_DIR):
            chain.append((code.co_qualname, frame.f_lineno))
            if code.co_name == "<module>":
                break
        frame = frame.f_back
    return chain


Made = list[tuple[asyncio.Task[None], list[tuple[str, int]]]]


def _noted(made: Made, task: asyncio.Task[None]) -> None:
    """Keeps `task` with the chain walked by hand from its caller, which made it on the same
    line (each frame outwards is at the same offset as when the task was made)."""
    made.append((task, _walked_by_hand(sys._getframe(1))))


def _make_with_loop(made: Made, name: str) -> None:
    _noted(made, asyncio.get_running_loop().create_task(_idle(), name=name))


def _make_with_asyncio(made: Made, name: str) -> None:
    _noted(made, asyncio.create_task(_idle(), name=name))


class _TaskMakingProtocol(asyncio.Protocol):
    """Makes tasks in `data_received`, as aiohttp makes each request's task: under asyncio's
    transport frames (`_read_ready`, `_read_ready__data_received`) and `Handle._run`."""

    def __init__(self, made: Made, each_read: asyncio.Queue[None]) -> None:
        self.made = made
        self.each_read = each_read
        self.reads = 0

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        loop = asyncio.get_running_loop()
        _noted(self.made, loop.create_task(_idle(), name=f"direct{self.reads}"))
        _make_with_loop(self.made, f"nested{self.reads}")
        _make_with_asyncio(self.made, f"via-asyncio{self.reads}")
        self.each_read.put_nowait(None)


def _relay(protocol: _TaskMakingProtocol) -> None:
    """Calls the protocol's callback itself, from a function whose __module__ is no string."""
    protocol.data_received(b"y")


_relay.__module__ = ["not a name"]  # type: ignore[assignment]


def test_chains_of_tasks_made_in_protocol_callbacks_and_coroutines_follow_the_frames() -> None:
    # GIVEN a program making tasks, round after round, from a protocol's data_received on a
    # real socket (directly, one function down, through asyncio.create_task), from a
    # callback the loop runs, and from coroutines (one awaited by another, one awaited
    # through asyncio.wait_for): the first round walks new chains, the later ones chains seen
    tracker = Tracker()
    tracker.install()

    async def awaited(made: Made, round_: int) -> None:
        _make_with_loop(made, f"awaited{round_}")

    async def main() -> tuple[dict[str, Any], Made, dict[str, int]]:
        loop = asyncio.get_running_loop()
        made: Made = []
        each_read: asyncio.Queue[None] = asyncio.Queue()
        protocol = _TaskMakingProtocol(made, each_read)
        reading, writing = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, reading)
        try:
            for round_ in range(4):
                writing.send(b"x")
                await each_read.get()
                loop.call_soon(_make_with_loop, made, f"call-soon{round_}")
                await asyncio.sleep(0)
                _make_with_loop(made, f"coroutine{round_}")
                _make_with_asyncio(made, f"coroutine-asyncio{round_}")
                await awaited(made, round_)
                await asyncio.wait_for(awaited(made, round_ + 100), 5)
            _relay(protocol)  # the callback's callers are passed by module name by now
            snap = await asyncio.to_thread(SnapshotBuilder(tracker).build)
        finally:
            transport.close()
            writing.close()
        sites = {task.get_name(): id(tracker.meta_of(task).created_from) for task, _ in made}  # type: ignore[union-attr]
        for task, _ in made:
            task.cancel()
        return snap, made, sites

    try:
        snap, made, sites = asyncio.run(main())
    finally:
        tracker.uninstall()
    tasks = by_name(snap)
    names = {task.get_name() for task, _ in made}
    assert {f"direct{n}" for n in range(1, 5)} <= names  # one read a byte
    for task, expected in made:
        # THEN every task's chain is the one walked frame by frame: the same functions and
        # lines, asyncio's frames passed, stopped at the loop's machinery
        assert _chain_of(tasks, task.get_name()) == expected, task.get_name()
    # AND a protocol callback's chain names it and stops there, not under asyncio.run
    relayed = [function for function, _ in _chain_of(tasks, "direct5")]
    assert relayed[:2] == ["_TaskMakingProtocol.data_received", "_relay"]
    direct = [function for function, _ in _chain_of(tasks, "direct3")]
    assert direct == ["_TaskMakingProtocol.data_received"]
    nested = [function for function, _ in _chain_of(tasks, "via-asyncio3")]
    assert nested == ["_make_with_asyncio", "_TaskMakingProtocol.data_received"]
    # AND tasks made at one place in later rounds share the chain of the first
    for kind in ("direct", "nested", "via-asyncio"):
        assert len({sites[f"{kind}{n}"] for n in range(1, 5)}) == 1, kind
    for kind in ("call-soon", "coroutine", "coroutine-asyncio", "awaited"):
        assert len({sites[f"{kind}{n}"] for n in range(4)}) == 1, kind


def _chain_of(tasks: dict[str, Any], name: str) -> list[tuple[str, int]]:
    return [(frame["function"], frame["line"]) for frame in tasks[name]["created_from"]]
