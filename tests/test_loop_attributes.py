"""The agent never asks an event loop, nor a program's object it need not, for its `__dict__`.

Asking an object for its `__dict__` makes a dictionary where its attributes were kept inline,
and from then on the interpreter no longer specialises calls of the object's methods: on a
loop, every `self._call_soon(...)`, `self._check_closed()` of asyncio's own code, 16% more CPU
per no-op task on 3.12 with or without a done callback (benchmarks/churn_cost.py). The agent
shadows `loop.create_task` and `loop.call_exception_handler` as plain attributes, reads them
back with getattr and removes them with delattr. A loop class that counts the reads of its
`__dict__` shows it, through install, task churn with a failed task whose exception nobody
retrieved, a snapshot, and uninstall."""

from __future__ import annotations

import asyncio
import gc
from types import MethodType
from typing import Any

from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import Tracker


def _instance_dict_getter() -> Any:
    for base in asyncio.SelectorEventLoop.__mro__:
        descriptor = base.__dict__.get("__dict__")
        if descriptor is not None:
            return descriptor.__get__
    raise AssertionError("no __dict__ descriptor on the selector loop's classes")


_INSTANCE_DICT = _instance_dict_getter()


class DictCountingLoop(asyncio.SelectorEventLoop):
    """A selector loop that counts who asks for its `__dict__`."""

    dict_reads = 0

    @property  # type: ignore[misc]
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        DictCountingLoop.dict_reads += 1
        return _INSTANCE_DICT(self)  # type: ignore[no-any-return]


async def _no_op() -> None:
    await asyncio.sleep(0)


async def _fail() -> None:
    raise ValueError("nobody reads this")


def test_the_agent_never_reads_the_loops_dict() -> None:
    # GIVEN the agent installed, and a program on a loop that counts reads of its __dict__
    tracker = Tracker()
    tracker.install()
    DictCountingLoop.dict_reads = 0
    seen: dict[str, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # WHEN it makes tasks (one fails, its exception never retrieved) and the agent looks
        await asyncio.gather(*[asyncio.create_task(_no_op()) for _ in range(50)])
        failing = asyncio.create_task(_fail())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        del failing
        gc.collect()  # the unretrieved exception is reported to call_exception_handler
        seen["snapshot"] = await asyncio.to_thread(SnapshotBuilder(tracker).build)
        seen["shadowed"] = type(loop.create_task) is not MethodType
        seen["handled"] = loop.get_exception_handler()
        seen["loop"] = loop

    runner = asyncio.Runner(loop_factory=DictCountingLoop)
    try:
        runner.get_loop().set_exception_handler(lambda _loop, _context: None)
        runner.run(main())
        # AND the agent leaves, the loop still open
        tracker.uninstall()
    finally:
        tracker.uninstall()
        runner.close()
    # THEN the agent saw the tasks (its create_task was in place) and their history
    assert seen["shadowed"] is True
    assert any(task.state == "failed" for task in tracker.finished_tasks())
    # AND the loop has its own methods back
    loop = seen["loop"]
    assert type(loop.create_task) is MethodType
    assert type(loop.call_exception_handler) is MethodType
    # AND nobody asked the loop for its __dict__: not at install, in the history callback or
    # the failed task's note, the snapshot, nor when the loop's methods were given back
    assert DictCountingLoop.dict_reads == 0


class _PlainObject:
    """Holds the interpreter's own `__dict__` descriptor, which `Bystander` shadows."""


_object_dict = _PlainObject.__dict__["__dict__"].__get__


class Bystander(_PlainObject):
    """A program's object that counts who asks for its `__dict__` (it holds no lock)."""

    dict_reads = 0

    def __init__(self) -> None:
        self.label = "bystander"
        self.count = 3

    @property  # type: ignore[misc]
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        Bystander.dict_reads += 1
        return _object_dict(self)  # type: ignore[no-any-return]


class Service:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()


async def _wait_for_the_lock(bystander: Bystander, service: Service) -> None:
    async with service.lock:
        pass


def test_naming_what_a_task_waits_on_asks_no_unrelated_object_for_its_dict() -> None:
    # GIVEN a task waiting for `service.lock`, with another of the program's objects in its
    # frame's locals before `service` (the agent looks through the locals for the name)
    tracker = Tracker()
    tracker.install()
    Bystander.dict_reads = 0
    seen: dict[str, Any] = {}

    async def main() -> None:
        service, bystander = Service(), Bystander()
        await service.lock.acquire()
        waiter = asyncio.create_task(_wait_for_the_lock(bystander, service), name="waiter")
        await asyncio.sleep(0)
        # WHEN the agent looks
        seen["snapshot"] = await asyncio.to_thread(SnapshotBuilder(tracker).build)
        service.lock.release()
        await waiter

    try:
        asyncio.run(main())
    finally:
        tracker.uninstall()
    # THEN it names the lock by the attribute that holds it
    waiting = next(task for task in seen["snapshot"]["tasks"] if task["name"] == "waiter")
    assert waiting["awaiting"]["object"]["name"] == "service.lock", waiting["awaiting"]
    # AND it did not make the bystander a __dict__ (which would slow its attribute reads for
    # good on 3.11 and 3.12): the collector's view told it the lock is not there
    assert Bystander.dict_reads == 0
