"""The private parts of asyncio (and concurrent.futures) the agent reads, checked on each version.

The agent learns what a task waits for, and who waits for it, from attributes asyncio does not
promise to keep: `Task._fut_waiter`, `Future._callbacks`, `loop._scheduled`, a Queue's
`_getters`, the closures gather and shield register, and so on. Each test here builds the real
situation with asyncio in this process (no mocks) and asserts that the attribute holds exactly
what the agent's code assumes: its type, its content, and how it relates to the other objects.
A comment on each test names the agent function that relies on it. Where a version legitimately
lacks an attribute and the agent has a fallback, the test asserts the fallback's condition
instead of skipping, so that a new Python release that moves anything fails here, by name,
before it makes the agent silently see less.

On 3.14+ the agent's awaited-by graph is also compared with `asyncio.capture_call_graph`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import concurrent.futures.thread
import contextlib
import contextvars
import gc
import os
import socket
import subprocess
import sys
import threading
import time
import types
import weakref
from asyncio import (
    base_events,
    locks,
    queues,
    selector_events,
    streams,
    subprocess as asyncio_subprocess,
    taskgroups,
    tasks,
    threads as asyncio_threads,
    timeouts,
)
from collections.abc import Awaitable, Callable
from types import BuiltinFunctionType, CodeType, CoroutineType, FrameType, FunctionType, MethodType
from typing import Any

import pytest

from taskscope.agent import awaiting, chains, waiters
from taskscope.agent.awaiting import _outside_asyncio, first_local
from taskscope.agent.cancel import cancel_reaches_cycle
from taskscope.agent.chains import walk_frames
from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import Tracker, _registry_sources, pending_tasks, task_coro

#: What a C Task's wake-up callback is (a method of a builtin type).
BUILTIN_METHOD: type[Any] = type([].append)
#: The longest any condition here may take to come true (a subprocess starting, a thread).
DEADLINE = 10.0


def _spawn(coro: Any, name: str | None = None) -> Any:
    """`asyncio.create_task`, typed Any: these tests read the task's private attributes."""
    return asyncio.create_task(coro, name=name)


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run until `condition` holds: a hundred bare turns first (enough for
    anything in-process), then short sleeps for I/O and other threads, up to DEADLINE."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def _waiting_on(task: Any) -> Any:
    return task._fut_waiter


async def _suspended(task: Any) -> Any:
    """The future `task` waits on, once it waits on one."""
    await _until(lambda: task._fut_waiter is not None, f"{task.get_name()} suspended")
    return task._fut_waiter


def _codes(task: Any) -> list[CodeType]:
    return [frame.f_code for frame in walk_frames(task._coro)]


def _owner_running(task: Any, code: CodeType) -> tuple[Any, FrameType]:
    """The coroutine of `task`'s chain that runs `code`, and its frame."""
    frames, owners, _key = chains._chain(task._coro)
    for frame, owner in zip(frames, owners, strict=True):
        if frame.f_code is code:
            return owner, frame
    raise AssertionError(f"{code.co_qualname} is not on {task.get_name()}'s chain")


def _only_wakeup(future: Any) -> Any:
    """The one callback on `future`: the wake-up of the task awaiting it."""
    callbacks = future._callbacks
    assert type(callbacks) is list and len(callbacks) == 1, callbacks
    callback, _context = callbacks[0]
    assert type(callback) is BUILTIN_METHOD
    return callback


def _woken(future: Any) -> list[Any]:
    """The tasks whose wake-up (a builtin method bound to them) is among `future`'s callbacks."""
    return [
        callback.__self__
        for callback, _context in future._callbacks
        if type(callback) is BUILTIN_METHOD
    ]


def _closures(future: Any) -> list[FunctionType]:
    return [callback for callback, _context in future._callbacks if type(callback) is FunctionType]


def _cells(function: FunctionType) -> dict[str, Any]:
    names = function.__code__.co_freevars
    return {
        name: cell.cell_contents
        for name, cell in zip(names, function.__closure__ or (), strict=True)
    }


async def _finish(*pending: asyncio.Future[Any]) -> None:
    for item in pending:
        item.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


# --- Task and Future ------------------------------------------------------------------------------


def test_fut_waiter_is_the_future_or_task_a_suspended_task_awaits() -> None:
    # introspect.SnapshotBuilder.build_raw, cancel.cancel_reaches_cycle
    async def scenario() -> None:
        future = asyncio.get_running_loop().create_future()

        async def on_future() -> None:
            await future

        inner = _spawn(on_future(), name="inner")

        async def on_task() -> None:
            await inner

        outer = _spawn(on_task(), name="outer")
        fresh = _spawn(on_future(), name="fresh")
        assert fresh._fut_waiter is None  # not started: it waits on nothing
        await _suspended(outer)
        assert inner._fut_waiter is future
        assert outer._fut_waiter is inner
        future.set_result(None)
        await asyncio.gather(outer, fresh)
        assert inner._fut_waiter is None and outer._fut_waiter is None

    _run(scenario)


def test_callbacks_are_callback_context_pairs_and_a_waiting_tasks_wakeup_has_it_as_self() -> None:
    # waiters._resolve_waiters (the C task's wake-up), cancel._cancel_in_cycle
    async def scenario() -> None:
        future: Any = asyncio.get_running_loop().create_future()
        assert not future._callbacks  # None or empty: "no callbacks" either way

        async def on_future() -> None:
            await future

        task = _spawn(on_future())
        await _suspended(task)
        (entry,) = future._callbacks
        assert type(entry) is tuple and len(entry) == 2
        wakeup, context = entry
        assert type(wakeup) is BUILTIN_METHOD is waiters._BUILTIN_METHOD
        assert wakeup.__self__ is task
        assert type(context) is contextvars.Context
        future.set_result(None)
        await task

    _run(scenario)


def test_callbacks_keep_the_very_done_callback_object_added_first() -> None:
    # introspect.SnapshotBuilder.build_raw (`callbacks[0][0] is not done_callback`),
    # tracker.Tracker._add_callbacks
    async def scenario() -> None:
        tracker = Tracker()
        task = asyncio.create_task(asyncio.Event().wait())
        context = contextvars.Context()
        task.add_done_callback(tracker.done_callback, context=context)
        callbacks = task._callbacks
        assert type(callbacks) is list and len(callbacks) == 1
        assert callbacks[0][0] is tracker.done_callback and callbacks[0][1] is context
        await _finish(task)

    _run(scenario)


def test_a_wakeup_called_with_a_cancelled_future_raises_cancelled_error_at_the_await() -> None:
    # cancel._cancel_in_cycle: how a task in an await cycle is cancelled without Task.cancel
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        both: dict[str, Any] = {}
        caught: list[BaseException] = []

        async def first() -> None:
            try:
                await both["second"]
            except asyncio.CancelledError as error:
                caught.append(error)
                raise

        async def second() -> None:
            await both["first"]

        both["first"] = _spawn(first())
        both["second"] = _spawn(second())
        await _suspended(both["second"])
        assert both["first"]._fut_waiter is both["second"]
        assert both["second"]._fut_waiter is both["first"]
        assert cancel_reaches_cycle(both["first"])
        waited = both["first"]._fut_waiter
        (wakeup,) = [
            cb for cb, _ in waited._callbacks if getattr(cb, "__self__", None) is both["first"]
        ]
        assert waited.remove_done_callback(wakeup) == 1
        cancelled = loop.create_future()
        cancelled.cancel("stop the cycle")
        loop.call_soon(wakeup, cancelled)
        results = await asyncio.gather(*both.values(), return_exceptions=True)
        assert [type(result) for result in results] == [asyncio.CancelledError] * 2
        assert len(caught) == 1 and caught[0].args == ("stop the cycle",)

    _run(scenario)


def test_a_python_tasks_wakeup_is_its_bound_method_task___wakeup() -> None:
    # waiters._resolve_waiters (_PY_TASK_WAKEUP: the pure-Python Task)
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        async def on_future() -> None:
            await future

        python_task: Any = tasks._PyTask(on_future(), loop=loop)  # type: ignore[attr-defined]
        await _suspended(python_task)
        assert waiters._PY_TASK_WAKEUP is tasks._PyTask._Task__wakeup  # type: ignore[attr-defined]
        (entry,) = future._callbacks
        wakeup = entry[0]
        future.set_result(None)
        await python_task
        assert type(wakeup) is MethodType
        assert wakeup.__func__ is waiters._PY_TASK_WAKEUP and wakeup.__self__ is python_task

    _run(scenario)


def test_a_finished_tasks_result_exception_loop_and_coro_are_readable_in_its_done_callback() -> (
    None
):
    # tracker.Tracker._on_task_done, tracker.task_coro
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        seen: dict[str, tuple[Any, Any, Any, Any]] = {}

        def note(task: Any) -> None:
            seen[task.get_name()] = (task._result, task._exception, task._loop, task._coro)

        async def returns() -> int:
            return 5

        async def fails() -> None:
            raise ValueError("no")

        returning_coro, failing_coro = returns(), fails()
        returning = _spawn(returning_coro, name="returns")
        failing = _spawn(failing_coro, name="fails")
        for task in (returning, failing):
            task.add_done_callback(note)
        await asyncio.gather(returning, failing, return_exceptions=True)
        await _until(lambda: len(seen) == 2, "both done callbacks ran")
        result, exception, task_loop, coro = seen["returns"]
        assert result == 5 and exception is None and task_loop is loop
        assert coro is returning_coro and type(coro) is CoroutineType
        assert coro.cr_code is returns.__code__
        result, exception, task_loop, coro = seen["fails"]
        assert result is None and type(exception) is ValueError and exception is failing.exception()
        assert task_loop is loop and coro is failing_coro
        assert task_coro(returning) is returning_coro

    _run(scenario)


def test_a_finished_tasks_state_is_cancelled_exactly_when_it_was_cancelled() -> None:
    # tracker.Tracker._history_callback reads `_state` rather than calling `cancelled()`
    async def scenario() -> None:
        seen: dict[str, tuple[Any, bool]] = {}

        def note(task: Any) -> None:
            seen[task.get_name()] = (task._state, task.cancelled())

        async def returns() -> int:
            return 5

        async def fails() -> None:
            raise ValueError("no")

        async def waits() -> None:
            await asyncio.sleep(3600)

        tasks = [
            _spawn(returns(), name="returns"),
            _spawn(fails(), name="fails"),
            _spawn(waits(), name="waits"),
        ]
        for task in tasks:
            task.add_done_callback(note)
        await asyncio.sleep(0)
        tasks[2].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _until(lambda: len(seen) == 3, "the three done callbacks ran")
        assert seen == {
            "returns": ("FINISHED", False),
            "fails": ("FINISHED", False),
            "waits": ("CANCELLED", True),
        }

    _run(scenario)


def test_an_eager_task_finished_in_create_task_gives_none_or_its_coroutine_as_coro() -> None:
    # tracker.task_coro; the create_task wrapper notes the name of a task already done
    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def quick() -> int:
            return 1

        factory = getattr(asyncio, "eager_task_factory", None)
        if factory is None:
            # 3.11: no eager tasks; a task made by create_task has not run and keeps its coroutine
            coro = quick()
            task: Any = loop.create_task(coro)
            assert not task.done() and task_coro(task) is coro
            await task
            return
        loop.set_task_factory(factory)
        try:
            coro = quick()
            eager: Any = loop.create_task(coro)
        finally:
            loop.set_task_factory(None)
        assert eager.done() and eager.result() == 1
        assert eager._coro is None or eager._coro is coro
        assert task_coro(eager) is None or task_coro(eager) is coro

    _run(scenario)


def test_a_debug_mode_future_made_by_asyncio_future_names_its_creating_line_last() -> None:
    # awaiting.describe_future ("Future ... created at FILE:LINE")
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        plain: Any = asyncio.Future()
        assert plain._source_traceback is None  # not in debug mode: nothing said
        loop.set_debug(True)
        try:
            line = sys._getframe().f_lineno + 1
            future: Any = asyncio.Future()
        finally:
            loop.set_debug(False)
        source = future._source_traceback
        assert source, source
        where = source[-1]
        assert (where.filename, where.lineno) == (__file__, line)
        # describe_future reads `_source_traceback` of bare futures only: of this exact type
        assert type(future) is asyncio.Future and type(loop.create_future()) is asyncio.Future
        # For a future made by `loop.create_future()` the last entry is asyncio's own
        # `create_future` (base_events.py) on 3.11-3.15: the agent skips asyncio's entries.
        loop.set_debug(True)
        try:
            made_line = sys._getframe().f_lineno + 1
            made: Any = loop.create_future()
        finally:
            loop.set_debug(False)
        assert made._source_traceback[-1].filename.startswith(os.path.dirname(asyncio.__file__))
        where = _outside_asyncio(made._source_traceback)
        assert (where.filename, where.lineno) == (__file__, made_line)

    _run(scenario)


# --- walking a coroutine chain --------------------------------------------------------------------


def test_cr_await_links_a_coroutine_to_the_coroutine_it_awaits_down_to_a_frameless_iterator() -> (
    None
):
    # chains._chain
    async def scenario() -> None:
        future = asyncio.get_running_loop().create_future()

        async def leaf() -> None:
            await future

        async def middle() -> None:
            await leaf()

        task = _spawn(middle())
        await _suspended(task)
        outer = task._coro
        assert type(outer) is CoroutineType
        assert outer.cr_frame is not None and outer.cr_frame.f_code is middle.__code__
        inner = outer.cr_await
        assert type(inner) is CoroutineType
        assert inner.cr_frame is not None and inner.cr_frame.f_code is leaf.__code__
        end = inner.cr_await
        assert end is not None and type(end) is not CoroutineType
        assert getattr(end, "cr_frame", None) is None  # the walk stops at the future's iterator
        assert _codes(task) == [middle.__code__, leaf.__code__]
        future.set_result(None)
        await task

    _run(scenario)


def test_an_async_generators_asend_hides_it_but_gc_get_referents_lists_it() -> None:
    # chains._asend_generator, chains._chain (ag_frame, ag_await)
    async def scenario() -> None:
        future = asyncio.get_running_loop().create_future()

        async def numbers() -> Any:
            await future
            yield 1

        generator = numbers()

        async def consumer() -> None:
            async for _number in generator:
                pass

        task = _spawn(consumer())
        await _suspended(task)
        asend = task._coro.cr_await
        assert type(asend) is chains._ASEND_TYPES[0]
        assert getattr(asend, "cr_frame", None) is None and getattr(asend, "ag_frame", None) is None
        assert any(referent is generator for referent in gc.get_referents(asend))
        assert chains._asend_generator(asend) is generator
        assert generator.ag_frame.f_code is numbers.__code__
        assert generator.ag_await is not None and type(generator.ag_await) is not CoroutineType
        assert _codes(task) == [consumer.__code__, numbers.__code__]
        future.set_result(None)
        await task

    _run(scenario)


def test_an_async_generators_athrow_hides_it_but_gc_get_referents_lists_it() -> None:
    # chains._asend_generator (its athrow kind), chains._chain
    async def scenario() -> None:
        future = asyncio.get_running_loop().create_future()

        async def guarded() -> Any:
            try:
                yield 1
            except ValueError:
                await future
                yield 2

        generator = guarded()

        async def thrower() -> None:
            await generator.__anext__()
            await generator.athrow(ValueError("in"))

        task = _spawn(thrower())
        await _suspended(task)
        athrow = task._coro.cr_await
        assert type(athrow) is chains._ASEND_TYPES[1]
        assert chains._asend_generator(athrow) is generator
        assert _codes(task) == [thrower.__code__, guarded.__code__]
        future.set_result(None)
        await task
        await generator.aclose()

    _run(scenario)


def test_a_generator_based_await_links_through_gi_frame_and_gi_yieldfrom() -> None:
    # chains._chain (GeneratorType: gi_frame, gi_yieldfrom)
    async def scenario() -> None:
        future = asyncio.get_running_loop().create_future()

        @types.coroutine
        def legacy() -> Any:
            yield from future

        async def modern() -> None:
            await legacy()

        task = _spawn(modern())
        await _suspended(task)
        generator = task._coro.cr_await
        assert type(generator) is types.GeneratorType
        assert generator.gi_frame is not None and generator.gi_frame.f_code is legacy.__code__
        assert generator.gi_yieldfrom is not None
        assert getattr(generator.gi_yieldfrom, "cr_frame", None) is None
        assert _codes(task) == [modern.__code__, legacy.__code__]
        future.set_result(None)
        await task

    _run(scenario)


def test_gc_get_referents_of_a_suspended_coroutine_lists_function_code_then_first_local() -> None:
    # awaiting.first_local: a handler frame's `self` read without f_locals
    async def scenario() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        task = _spawn(queue.get())
        await _suspended(task)
        coro = task._coro
        code = queues.Queue.get.__code__
        referents = gc.get_referents(coro)
        # (3.11 lists the code once more, first: only the one after the function counts)
        (index,) = [
            position
            for position in range(1, len(referents) - 1)
            if referents[position] is code and type(referents[position - 1]) is FunctionType
        ]
        assert referents[index + 1] is queue
        assert first_local(coro, code) is queue
        assert coro.cr_frame.f_locals["self"] is queue  # the fallback says the same
        await _finish(task)

    _run(scenario)


# --- the frames of asyncio's APIs, and the objects they wait on -----------------------------------


def test_queue_get_and_put_frames_have_the_queue_as_self_with_queue_maxsize_and_getters() -> None:
    # awaiting._queue ("get", "put"), waiters._resolve_waiters (a queue's _getters)
    async def scenario() -> None:
        empty: asyncio.Queue[int] = asyncio.Queue(maxsize=2)
        getter = _spawn(empty.get())
        waited = await _suspended(getter)
        get_code = queues.Queue.get.__code__
        assert get_code in awaiting.HANDLERS and awaiting.SELF_CLASSES[get_code] is queues.Queue
        owner, _frame = _owner_running(getter, get_code)
        assert first_local(owner, get_code) is empty
        assert len(empty._queue) == 0
        assert empty._maxsize == 2
        assert list(empty._getters) == [waited]
        assert _only_wakeup(waited).__self__ is getter

        full: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        full.put_nowait(1)
        putter = _spawn(full.put(2))
        await _suspended(putter)
        put_code = queues.Queue.put.__code__
        owner, _frame = _owner_running(putter, put_code)
        assert first_local(owner, put_code) is full
        assert list(full._queue) == [1] and full._maxsize == 1
        await _finish(getter, putter)

    _run(scenario)


def test_lock_acquire_frame_has_the_lock_as_self_with_locked_and_waiters() -> None:
    # awaiting._primitive("lock"), awaiting._waiters
    async def scenario() -> None:
        lock: Any = asyncio.Lock()
        assert lock._locked is False and not lock._waiters  # None until someone waits
        await lock.acquire()
        waiter = _spawn(lock.acquire())
        waited = await _suspended(waiter)
        code = locks.Lock.acquire.__code__
        owner, _frame = _owner_running(waiter, code)
        assert first_local(owner, code) is lock
        assert lock._locked is True
        assert len(lock._waiters) == 1 and list(lock._waiters) == [waited]
        lock.release()
        await waiter
        lock.release()
        assert lock._locked is False

    _run(scenario)


def test_semaphore_acquire_frame_has_the_semaphore_as_self_with_value_and_waiters() -> None:
    # awaiting._primitive("semaphore")
    async def scenario() -> None:
        semaphore: Any = asyncio.Semaphore(1)
        assert semaphore._value == 1
        await semaphore.acquire()
        waiter = _spawn(semaphore.acquire())
        waited = await _suspended(waiter)
        code = locks.Semaphore.acquire.__code__
        owner, _frame = _owner_running(waiter, code)
        assert first_local(owner, code) is semaphore
        assert semaphore._value == 0
        assert list(semaphore._waiters) == [waited]
        semaphore.release()
        await waiter

    _run(scenario)


def test_event_wait_frame_has_the_event_as_self_with_value_and_waiters() -> None:
    # awaiting._primitive("event")
    async def scenario() -> None:
        event: Any = asyncio.Event()
        waiter = _spawn(event.wait())
        waited = await _suspended(waiter)
        code = locks.Event.wait.__code__
        owner, _frame = _owner_running(waiter, code)
        assert first_local(owner, code) is event
        assert event._value is False
        assert len(event._waiters) == 1 and list(event._waiters) == [waited]
        event.set()
        assert event._value is True
        await waiter

    _run(scenario)


def test_condition_wait_and_wait_for_frames_have_the_condition_as_self_with_waiters() -> None:
    # awaiting._condition
    async def scenario() -> None:
        condition = asyncio.Condition()
        ready = False

        async def waits() -> None:
            async with condition:
                await condition.wait()

        async def waits_for() -> None:
            async with condition:
                await condition.wait_for(lambda: ready)

        plain = _spawn(waits())
        predicate = _spawn(waits_for())
        plain_waited = await _suspended(plain)
        predicate_waited = await _suspended(predicate)
        for task, code in (
            (plain, locks.Condition.wait.__code__),
            (predicate, locks.Condition.wait_for.__code__),
        ):
            assert code in awaiting.HANDLERS
            owner, _frame = _owner_running(task, code)
            assert first_local(owner, code) is condition
        # wait_for waits through wait: the handler table matches the outermost frame first
        codes = _codes(predicate)
        assert codes.index(locks.Condition.wait_for.__code__) < codes.index(
            locks.Condition.wait.__code__
        )
        assert list(condition._waiters) == [plain_waited, predicate_waited]
        ready = True
        async with condition:
            condition.notify_all()
        await asyncio.gather(plain, predicate)

    _run(scenario)


def test_barrier_wait_frame_has_the_barrier_as_self_with_parties_and_count() -> None:
    # awaiting._primitive("barrier")
    async def scenario() -> None:
        barrier: Any = asyncio.Barrier(3)
        waiters = [_spawn(barrier.wait()) for _ in range(2)]
        for waiter in waiters:
            await _suspended(waiter)
        code = locks.Barrier.wait.__code__
        for waiter in waiters:
            owner, _frame = _owner_running(waiter, code)
            assert first_local(owner, code) is barrier
        assert barrier._parties == 3 and barrier._count == 2
        await barrier.abort()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(type(result) is asyncio.BrokenBarrierError for result in results)

    _run(scenario)


def test_a_sleeps_timer_in_loop_scheduled_has_its_future_as_first_arg_and_its_end_in_when() -> None:
    # awaiting.AwaitContext.index_timers
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        before = loop.time()
        sleeper = _spawn(asyncio.sleep(100))
        waited = await _suspended(sleeper)
        after = loop.time()
        assert tasks.sleep.__code__ in _codes(sleeper)
        scheduled = loop._scheduled  # type: ignore[attr-defined]
        assert type(scheduled) is list
        handles = [handle for handle in scheduled if handle._args and handle._args[0] is waited]
        assert len(handles) == 1
        handle = handles[0]
        assert handle._cancelled is False and callable(handle._callback)
        assert type(handle._when) is float and handle._when == handle.when()
        assert before + 100 <= handle._when <= after + 100
        assert type(handle) is asyncio.TimerHandle
        other: Any = loop.call_later(50, print)
        other.cancel()
        assert other._cancelled is True
        await _finish(sleeper)

    _run(scenario)


def test_a_sleeps_timer_keeps_one_float_object_for_its_end_and_each_sleep_makes_its_own() -> None:
    # introspect._on_noted_future: a sleeping task is known unmoved by the very float its
    # timer holds, so each read must give that object, and a new sleep (even one ending at
    # the same time, or with its future at the freed one's address) a float of its own
    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        def timer_of(future: Any) -> Any:
            scheduled = loop._scheduled  # type: ignore[attr-defined]
            return next(handle for handle in scheduled if handle._args[:1] == (future,))

        first = _spawn(asyncio.sleep(100))
        waited = await _suspended(first)
        end = timer_of(waited)._when
        assert timer_of(waited)._when is end
        second = _spawn(asyncio.sleep(end - loop.time()))
        other_end = timer_of(await _suspended(second))._when
        assert other_end is not end
        await _finish(first)
        await _finish(second)

    _run(scenario)


def test_a_timeouts_timer_calls_a_bound_method_of_the_timeout_whose_task_is_the_waiter() -> None:
    # awaiting.AwaitContext.index_timers (asyncio.timeout deadlines)
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        holder: dict[str, Any] = {}

        async def guarded() -> None:
            async with asyncio.timeout(100) as scope:
                holder["scope"] = scope
                await asyncio.Event().wait()

        task = _spawn(guarded())
        await _suspended(task)
        scope = holder["scope"]
        handles = [
            handle
            for handle in loop._scheduled  # type: ignore[attr-defined]
            if type(handle._callback) is MethodType and handle._callback.__self__ is scope
        ]
        assert len(handles) == 1
        assert scope._task is task and handles[0]._when == scope.when()
        assert isinstance(scope, timeouts.Timeout)
        await _finish(task)

    _run(scenario)


def test_wait_for_runs_its_awaitable_inline_or_in_an_inner_task_held_in_its_local_fut() -> None:
    # awaiting._describe_wait_for, awaiting._with_deadline (3.11: the timer releases the waiter)
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        async def waits() -> None:
            await asyncio.wait_for(event.wait(), 100)

        task = _spawn(waits())
        waited = await _suspended(task)
        frames = walk_frames(task._coro)
        codes = [frame.f_code for frame in frames]
        index = codes.index(tasks.wait_for.__code__)
        if sys.version_info >= (3, 12):
            # inline: the awaitable's frames follow; asyncio.timeout holds the deadline
            assert codes[index + 1 :] == [locks.Event.wait.__code__]
            assert any(
                type(handle._callback) is MethodType
                and isinstance(handle._callback.__self__, timeouts.Timeout)
                and handle._callback.__self__._task is task
                for handle in loop._scheduled  # type: ignore[attr-defined]
            )
        else:
            # an inner task, wait_for's local `fut`; the timer's first argument is the waiter
            assert index == len(frames) - 1
            inner = frames[index].f_locals["fut"]
            assert issubclass(type(inner), asyncio.Task) and inner is not waited
            await _suspended(inner)
            assert _codes(inner) == [locks.Event.wait.__code__]
            assert any(
                handle._args and handle._args[0] is waited
                for handle in loop._scheduled  # type: ignore[attr-defined]
            )
        event.set()
        await task

    _run(scenario)


def test_a_task_group_lists_its_members_whose_done_callback_leads_to_its_parent() -> None:
    # waiters._resolve_waiters (TaskGroup._on_task_done), awaiting._task_group
    async def scenario() -> None:
        event, leave_body = asyncio.Event(), asyncio.Event()
        holder: dict[str, Any] = {}

        async def owner() -> None:
            async with asyncio.TaskGroup() as group:
                holder["group"] = group
                holder["members"] = [group.create_task(event.wait()) for _ in range(2)]
                await leave_body.wait()

        parent = _spawn(owner())
        await _suspended(parent)
        group, members = holder["group"], holder["members"]
        assert group._parent_task is parent
        assert type(group._tasks) is set and group._tasks == set(members)
        for member in members:
            done = [
                callback
                for callback, _context in member._callbacks
                if type(callback) is MethodType and callback.__func__ is waiters._TASK_GROUP_DONE
            ]
            assert len(done) == 1 and done[0].__self__ is group
        # in the body of `async with`: not waiting on the group yet (an owner, not a waiter)
        assert parent._fut_waiter is not getattr(group, "_on_completed_fut", None)
        leave_body.set()
        await _until(
            lambda: taskgroups.TaskGroup.__aexit__.__code__ in _codes(parent), "parent in __aexit__"
        )
        await _suspended(parent)
        assert group._on_completed_fut is parent._fut_waiter
        code = taskgroups.TaskGroup.__aexit__.__code__
        assert awaiting.SELF_CLASSES[code] is taskgroups.TaskGroup
        aexit, _frame = _owner_running(parent, code)
        assert first_local(aexit, code) is group
        event.set()
        await parent

    _run(scenario)


def test_gather_awaits_a_gathering_future_whose_children_are_its_awaitables() -> None:
    # awaiting.describe_future, waiters._resolve_waiters (gather's closure),
    # cancel.cancel_reaches_cycle (a gather's `_children`)
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        first, second = _spawn(event.wait()), loop.create_future()

        async def gatherer() -> None:
            await asyncio.gather(first, second)

        waiter = _spawn(gatherer())
        outer = await _suspended(waiter)
        assert type(outer) is tasks._GatheringFuture is awaiting._GATHERING_FUTURE  # type: ignore[attr-defined]
        assert type(outer._children) is list
        assert len(outer._children) == 2
        assert outer._children[0] is first and outer._children[1] is second
        for child in (first, second):
            assert any(
                value is outer for closure in _closures(child) for value in _cells(closure).values()
            )
        assert _only_wakeup(outer).__self__ is waiter
        event.set()
        second.set_result(None)
        await waiter

    _run(scenario)


def test_gathers_done_callback_on_a_pending_child_holds_return_exceptions() -> None:
    # awaiting._gather_returns_exceptions: the done callback gather adds to each child is the
    # code nested in `gather` named `_done_callback`, its closure's `return_exceptions` the
    # argument; without it a child's cancel reaches the task awaiting the gather
    async def scenario() -> None:
        for returns in (False, True):
            event = asyncio.Event()
            first, second = _spawn(event.wait()), _spawn(asyncio.sleep(3600))

            async def gatherer(first: Any, second: Any, returns: bool) -> object:
                return await asyncio.gather(first, second, return_exceptions=returns)

            waiter = _spawn(gatherer(first, second, returns))
            outer = await _suspended(waiter)
            assert awaiting._GATHER_DONE_CODE is not None
            assert awaiting._gather_returns_exceptions(outer._children) is returns
            described = awaiting.describe_future(None, outer)  # type: ignore[arg-type]
            assert described is not None and described["object"]["return_exceptions"] is returns
            second.cancel()
            if returns:
                event.set()
                results = await waiter
                assert isinstance(results[1], asyncio.CancelledError)  # type: ignore[index]
            else:
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
                assert waiter.cancelled() or isinstance(waiter.exception(), asyncio.CancelledError)
                event.set()
                await first

    _run(scenario)


def test_shield_callbacks_name_the_inner_task_and_lead_from_it_to_the_outer_future() -> None:
    # awaiting.describe_future (shield's _outer_done_callback), waiters._BACKWARD_CODES
    async def scenario() -> None:
        event = asyncio.Event()
        inner = _spawn(event.wait())

        async def shielding() -> None:
            await asyncio.shield(inner)

        waiter = _spawn(shielding())
        outer = await _suspended(waiter)
        assert issubclass(type(outer), asyncio.Future) and not issubclass(type(outer), asyncio.Task)
        (outer_done,) = _closures(outer)
        assert awaiting._SHIELD_OUTER_CODE is not None
        assert outer_done.__code__ is awaiting._SHIELD_OUTER_CODE
        assert waiters._BACKWARD_CODES == {awaiting._SHIELD_OUTER_CODE}
        assert _cells(outer_done)["inner"] is inner
        assert any(
            value is outer for closure in _closures(inner) for value in _cells(closure).values()
        )
        assert _woken(outer) == [waiter]
        event.set()
        await waiter

    _run(scenario)


def test_asyncio_wait_keeps_fs_and_return_when_and_registers_a_closure_holding_its_waiter() -> None:
    # awaiting._wait, waiters._resolve_waiters (wait's closure)
    async def scenario() -> None:
        watched = asyncio.get_running_loop().create_future()

        async def waits() -> None:
            await asyncio.wait([watched], return_when=asyncio.FIRST_COMPLETED)

        task = _spawn(waits())
        waited = await _suspended(task)
        _owner, frame = _owner_running(task, tasks.wait.__code__)
        fs = frame.f_locals["fs"]
        assert type(fs) is set and fs == {watched}
        assert frame.f_locals["return_when"] == "FIRST_COMPLETED"
        assert any(
            value is waited for closure in _closures(watched) for value in _cells(closure).values()
        )
        assert _only_wakeup(waited).__self__ is task
        watched.set_result(None)
        await task

    _run(scenario)


def test_as_completed_waits_in_wait_for_one_and_its_callbacks_lead_through_a_queue() -> None:
    # awaiting._build_handlers (as_completed), waiters._resolve_waiters (_AS_COMPLETED_ITERATOR)
    async def scenario() -> None:
        watched = asyncio.get_running_loop().create_future()

        async def consumer() -> None:
            for next_one in asyncio.as_completed([watched]):
                await next_one

        task = _spawn(consumer())
        waited = await _suspended(task)
        iterator_type = getattr(tasks, "_AsCompletedIterator", None)
        assert waiters._AS_COMPLETED_ITERATOR is iterator_type
        if iterator_type is not None:  # 3.13+: a class, its done-callback a bound method
            expected = iterator_type._wait_for_one.__code__
            (method,) = [cb for cb, _ in watched._callbacks if type(cb) is MethodType]
            iterator: Any = method.__self__
            assert type(iterator) is iterator_type
            done = iterator._done
        else:  # 3.11-3.12: a generator; its nested _wait_for_one and a closure over `done`
            (expected,) = [
                const
                for const in tasks.as_completed.__code__.co_consts
                if type(const) is CodeType and const.co_name == "_wait_for_one"
            ]
            (closure,) = _closures(watched)
            done = _cells(closure)["done"]
        assert expected in awaiting.HANDLERS and expected in _codes(task)
        assert issubclass(type(done), queues.Queue) and list(done._getters) == [waited]
        assert _only_wakeup(waited).__self__ is task
        watched.set_result(None)
        await task

    _run(scenario)


def _work_item_frame(run_code: CodeType) -> FrameType | None:
    for frame in sys._current_frames().values():
        walker: FrameType | None = frame
        while walker is not None:
            if walker.f_code is run_code:
                return walker
            walker = walker.f_back
    return None


def test_run_in_executor_chains_a_concurrent_future_held_by_the_worker_threads_work_item() -> None:
    # awaiting._chained_source (_chain_future), awaiting.AwaitContext.executor_threads (_WorkItem)
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        release = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            mirrored = loop.run_in_executor(pool, release.wait)
            assert awaiting._CHAIN_CANCEL_CODE is not None
            chained = [
                cb for cb in _closures(mirrored) if cb.__code__ is awaiting._CHAIN_CANCEL_CODE
            ]
            assert len(chained) == 1
            sources = [
                value
                for value in _cells(chained[0]).values()
                if isinstance(value, concurrent.futures.Future)
            ]
            assert len(sources) == 1
            run_code = concurrent.futures.thread._WorkItem.run.__code__
            frames: list[FrameType | None] = [None]

            def found() -> bool:
                frames[0] = _work_item_frame(run_code)
                return frames[0] is not None

            await _until(found, "the worker thread runs the work item")
            frame = frames[0]
            assert frame is not None
            item: Any = frame.f_locals["self"]
            assert item.future is sources[0]
            function = getattr(item, "fn", None)
            if function is None:  # 3.14+: the work item holds (fn, args, kwargs)
                assert type(item.task) is tuple and len(item.task) == 3
                function = item.task[0]
            assert function == release.wait
            assert type(item) is concurrent.futures.thread._WorkItem
            assert awaiting._work_item_function(item) == release.wait
            release.set()
            assert await mirrored is True

    _run(scenario)


def test_to_thread_keeps_the_function_in_its_local_func() -> None:
    # awaiting._to_thread
    async def scenario() -> None:
        release = threading.Event()
        task = _spawn(asyncio.to_thread(release.wait))
        await _suspended(task)
        _owner, frame = _owner_running(task, asyncio_threads.to_thread.__code__)
        assert frame.f_locals["func"] == release.wait
        release.set()
        await task

    _run(scenario)


# --- streams, servers, sockets, subprocesses ----------------------------------------------------


async def _connected_pair() -> tuple[Any, Any, Any, Any, Any]:
    """A server on 127.0.0.1 and a client connected to it: server, client reader and writer,
    the server's writer and reader of that connection."""
    accepted: list[tuple[Any, Any]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append((reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    reader, writer = await asyncio.open_connection(host, port)
    await _until(lambda: bool(accepted), "the server accepted the connection")
    return server, reader, writer, accepted[0][1], accepted[0][0]


async def _close(server: Any, *writers: Any) -> None:
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


def test_a_reading_stream_reader_has_a_buffer_and_a_transport_whose_extra_names_the_peer() -> None:
    # awaiting._stream("read"), awaiting._peer_of_transport
    async def scenario() -> None:
        server, reader, writer, server_writer, _server_reader = await _connected_pair()
        task = _spawn(reader.readexactly(10))
        await _suspended(task)
        server_writer.write(b"abc")
        await server_writer.drain()
        await _until(lambda: len(reader._buffer) == 3, "three bytes buffered")
        await _suspended(task)
        codes = _codes(task)
        assert streams.StreamReader.readexactly.__code__ in codes
        assert vars(streams.StreamReader)["_wait_for_data"].__code__ in codes
        code = streams.StreamReader.readexactly.__code__
        owner, _frame = _owner_running(task, code)
        assert first_local(owner, code) is reader
        assert type(reader._buffer) is bytearray and bytes(reader._buffer) == b"abc"
        extra = reader._transport._extra
        assert type(extra) is dict
        assert extra["peername"] == server.sockets[0].getsockname()
        await _finish(task)
        await _close(server, writer, server_writer)

    _run(scenario)


def test_a_draining_stream_writer_waits_in_drain_helper_and_its_transport_names_the_peer() -> None:
    # awaiting._stream("drain")
    async def scenario() -> None:
        server, _reader, writer, server_writer, server_reader = await _connected_pair()
        payload = b"x" * (32 << 20)  # more than the kernel buffers: drain has to wait
        writer.write(payload)
        task = _spawn(writer.drain())
        await _suspended(task)
        codes = _codes(task)
        drain_code = streams.StreamWriter.drain.__code__
        assert (
            drain_code in codes
            and vars(streams.FlowControlMixin)["_drain_helper"].__code__ in codes
        )
        assert codes.index(drain_code) == 0  # the handler table meets drain first
        owner, _frame = _owner_running(task, drain_code)
        assert first_local(owner, drain_code) is writer
        extra = writer._transport._extra
        assert type(extra) is dict
        assert extra["peername"] == server.sockets[0].getsockname()
        assert len(await server_reader.readexactly(len(payload))) == len(payload)
        await task
        await _close(server, writer, server_writer)

    _run(scenario)


def test_serve_forever_frame_has_the_server_as_self_and_its_sockets_in_sockets() -> None:
    # awaiting._server
    async def scenario() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        task = _spawn(server.serve_forever())
        await _suspended(task)
        code = base_events.Server.serve_forever.__code__
        owner, _frame = _owner_running(task, code)
        assert first_local(owner, code) is server
        sockets = server._sockets
        assert sockets and all(isinstance(sock, socket.socket) for sock in sockets)
        assert [socket.socket.getsockname(sock) for sock in sockets] == [
            sock.getsockname() for sock in server.sockets
        ]
        await _finish(task)
        server.close()
        await server.wait_closed()

    _run(scenario)


def test_sock_recv_frame_keeps_the_socket_in_its_local_sock() -> None:
    # awaiting._sock
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        left.setblocking(False)
        try:
            task = _spawn(loop.sock_recv(left, 10))
            await _suspended(task)
            code = selector_events.BaseSelectorEventLoop.sock_recv.__code__
            assert code in awaiting.HANDLERS
            _owner, frame = _owner_running(task, code)
            assert frame.f_locals["sock"] is left
            right.send(b"x")
            assert await task == b"x"
        finally:
            left.close()
            right.close()

    _run(scenario)


def test_process_wait_frame_has_the_process_as_self_and_its_transports_proc_has_args() -> None:
    # awaiting._subprocess
    async def scenario() -> None:
        program = (sys.executable, "-c", "import sys; sys.stdin.read()")
        process = await asyncio.create_subprocess_exec(*program, stdin=subprocess.PIPE)
        task = _spawn(process.wait())
        await _suspended(task)
        code = asyncio_subprocess.Process.wait.__code__
        owner, _frame = _owner_running(task, code)
        assert first_local(owner, code) is process
        args = process._transport._proc.args
        assert isinstance(args, list | tuple) and tuple(args) == program
        assert process.stdin is not None
        process.stdin.close()
        assert await task == 0

    _run(scenario)


# --- loops, threads and the task registry ---------------------------------------------------------


def test_a_running_loop_has_its_thread_id_and_threading_active_maps_it_to_the_thread() -> None:
    # tracker.Tracker.register_loop (_thread_id), introspect._loop_record (threading._active)
    seen: dict[str, Any] = {}

    async def note() -> None:
        seen["loop_thread"] = asyncio.get_running_loop()._thread_id  # type: ignore[attr-defined]
        seen["ident"] = threading.get_ident()

    thread = threading.Thread(target=asyncio.run, args=(note(),), name="assumption-loop")
    thread.start()
    thread.join(DEADLINE)
    assert seen["loop_thread"] == seen["ident"] == thread.ident
    assert threading._active[threading.get_ident()] is threading.current_thread()  # type: ignore[attr-defined]
    assert threading._active.get(seen["ident"]) is None  # type: ignore[attr-defined]  # gone with it


def test_a_create_task_set_on_the_loop_object_sees_every_task_asyncio_makes() -> None:
    # tracker.Tracker._install_factory (shadows `create_task` on the loop object)
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        original = loop.create_task
        seen: list[asyncio.Task[Any]] = []

        def create_task(coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            task = original(coro, **kwargs)
            seen.append(task)
            return task

        loop.create_task = create_task  # type: ignore[method-assign]
        try:
            direct = asyncio.create_task(event.wait())
            ensured = asyncio.ensure_future(event.wait())
            gathering = asyncio.gather(event.wait())
            async with asyncio.TaskGroup() as group:
                member = group.create_task(event.wait())
                event.set()
            await asyncio.gather(direct, ensured, gathering)
        finally:
            del loop.create_task
        made = [direct, ensured, gathering._children[0], member]  # type: ignore[attr-defined]
        assert all(any(task is other for other in seen) for task in made)
        assert loop.create_task == original

    _run(scenario)


def test_asyncio_run_calls_events_new_event_loop_and_events_set_running_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tracker.Tracker.install: both hooks are module attributes looked up at each call
    made: list[Any] = []
    running: list[Any] = []
    original_new, original_set = asyncio.events.new_event_loop, asyncio.events._set_running_loop

    def new_event_loop() -> asyncio.AbstractEventLoop:
        loop = original_new()
        made.append(loop)
        return loop

    def set_running_loop(loop: Any) -> None:
        original_set(loop)
        running.append(loop)

    monkeypatch.setattr(asyncio.events, "new_event_loop", new_event_loop)
    monkeypatch.setattr(asyncio.events, "_set_running_loop", set_running_loop)

    async def which_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    loop = asyncio.run(which_loop())
    assert made == [loop]
    assert running and running[0] is loop and running[-1] is None


def test_a_runner_makes_its_loop_in_lazy_init_and_keeps_it_in_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # loops.LoopTracker.install: a loop made by a loop_factory (uvloop.run, asyncio.run's
    # loop_factory) is seen when Runner._lazy_init, looked up on the class at each run, has
    # made it; and asyncio's package-level `_set_running_loop` is the events module's
    # function (uvloop binds that name when it is imported)
    assert asyncio._set_running_loop is asyncio.events._set_running_loop
    made: list[asyncio.AbstractEventLoop] = []
    seen: list[Any] = []
    original = asyncio.Runner._lazy_init  # type: ignore[attr-defined]

    def lazy_init(runner: asyncio.Runner) -> None:
        original(runner)
        seen.append(runner._loop)  # type: ignore[attr-defined]

    def factory() -> asyncio.AbstractEventLoop:
        made.append(asyncio.SelectorEventLoop())
        return made[-1]

    monkeypatch.setattr(asyncio.Runner, "_lazy_init", lazy_init)

    async def which_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=factory) as runner:
        loop = runner.run(which_loop())
    assert made == [loop] and seen and seen[0] is loop


def test_registry_sources_are_none_exactly_where_all_tasks_is_c_and_else_hold_new_tasks() -> None:
    # tracker._registry_sources, tracker.pending_tasks
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        tracker = Tracker()
        tracker.register_loop(loop)
        sources = _registry_sources()
        task = asyncio.create_task(asyncio.Event().wait())
        if isinstance(tasks.all_tasks, BuiltinFunctionType):
            assert sources is None  # the registry lives in C: all_tasks(loop) is the way
            assert task in asyncio.all_tasks(loop)
        else:
            assert sources is not None
            registry: Any = sources[0]
            references = registry.data
            assert type(references) is set
            # (a lookup, not a walk of the set: a task of an earlier test collected during
            # the walk would remove its reference and end it with "Set changed size")
            assert weakref.ref(task) in references
            assert type(registry) is weakref.WeakSet
            eager_factory = getattr(asyncio, "eager_task_factory", None)
            if eager_factory is None:  # 3.11: one set of all tasks
                assert sources == (tasks._all_tasks,)  # type: ignore[attr-defined]
            else:  # 3.12-3.13: a task is in the eager set while its eager first step runs
                assert len(sources) == 2 and type(sources[1]) is set
                inside: list[bool] = []

                async def eager() -> None:
                    me = asyncio.current_task()
                    inside.append(any(other is me for other in sources[1]))
                    await asyncio.Event().wait()

                loop.set_task_factory(eager_factory)
                try:
                    started = loop.create_task(eager())
                finally:
                    loop.set_task_factory(None)
                assert inside == [True] and not started.done()
                assert started in pending_tasks(tracker)
                await _finish(started)
        assert task in pending_tasks(tracker)
        await _finish(task)

    _run(scenario)


def test_current_task_and_all_tasks_of_a_loop_answer_from_another_thread() -> None:
    # introspect.SnapshotBuilder.build_raw (current_task(loop)), tracker.pending_tasks
    inside, release = threading.Event(), threading.Event()
    shared: dict[str, Any] = {}

    async def blocker() -> None:
        inside.set()
        release.wait(DEADLINE)  # holds the loop's thread: it is the current task meanwhile

    async def main() -> None:
        shared["loop"] = asyncio.get_running_loop()
        shared["stop"] = shared["loop"].create_future()
        shared["idle"] = asyncio.create_task(asyncio.Event().wait(), name="idle")
        shared["blocker"] = _spawn(blocker(), name="blocker")
        await shared["blocker"]
        await shared["stop"]
        await _finish(shared["idle"])

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="assumption-loop")
    thread.start()
    try:
        assert inside.wait(DEADLINE)
        loop, blocking, idle = shared["loop"], shared["blocker"], shared["idle"]
        current = asyncio.current_task(loop)
        assert current is not None and current is blocking
        assert {idle, blocking} <= asyncio.all_tasks(loop)
        release.set()
        deadline = time.monotonic() + DEADLINE
        while not blocking.done() or asyncio.current_task(loop) is not None:
            assert time.monotonic() < deadline, "the loop never went idle"
            time.sleep(0.005)
        assert idle in asyncio.all_tasks(loop)
        assert blocking not in asyncio.all_tasks(loop)
    finally:
        release.set()
        if "stop" in shared:
            shared["loop"].call_soon_threadsafe(shared["stop"].set_result, None)
        thread.join(DEADLINE)
    assert not thread.is_alive()


# --- 3.14+: the agent's awaited-by graph against asyncio's own ----------------------------------


@pytest.mark.skipif(
    not hasattr(asyncio, "capture_call_graph"),
    reason="asyncio.capture_call_graph (3.14+), the reference for the awaited-by graph, is missing",
)
def test_the_snapshots_awaited_by_graph_agrees_with_capture_call_graph() -> None:
    # waiters._resolve_waiters against asyncio.capture_call_graph(task).awaited_by: a task
    # awaiting another directly, gather, shield, TaskGroup (in __aexit__ and still in the
    # body), asyncio.wait and as_completed
    async def scenario() -> None:
        tracker = Tracker()
        tracker.install()
        event, leave_body = asyncio.Event(), asyncio.Event()
        made: list[Any] = []

        def spawn(coro: Any, name: str) -> Any:
            task = _spawn(coro, name=name)
            made.append(task)
            return task

        async def leaf() -> None:
            await event.wait()

        async def awaits(task: asyncio.Task[Any]) -> None:
            await task

        async def gathers(*children: asyncio.Task[Any]) -> None:
            await asyncio.gather(*children)

        async def shields(inner: asyncio.Task[Any]) -> None:
            await asyncio.shield(inner)

        async def waits(*children: asyncio.Task[Any]) -> None:
            await asyncio.wait(children)

        async def takes_first(*children: asyncio.Task[Any]) -> None:
            for next_one in asyncio.as_completed(children):
                await next_one

        async def group_owner(in_body: bool) -> None:
            async with asyncio.TaskGroup() as group:
                for number in range(2):
                    group.create_task(leaf(), name=f"member-{in_body}-{number}")
                if in_body:
                    await leave_body.wait()

        try:
            child = spawn(leaf(), "child")
            spawn(awaits(child), "direct-parent")
            spawn(gathers(spawn(leaf(), "gathered-1"), spawn(leaf(), "gathered-2")), "gatherer")
            spawn(shields(spawn(leaf(), "shielded")), "shielder")
            spawn(group_owner(False), "group-in-aexit")
            spawn(group_owner(True), "group-in-body")
            spawn(waits(spawn(leaf(), "waited-1"), spawn(leaf(), "waited-2")), "waiter")
            spawn(takes_first(spawn(leaf(), "completed-1")), "as-completed")
            await _until(
                lambda: all(
                    _waiting_on(task) is not None
                    for task in asyncio.all_tasks()
                    if task is not asyncio.current_task()
                ),
                "every task suspended",
            )
            snapshot = SnapshotBuilder(tracker).build(include_finished=False)
            records = {record["id"]: record for record in snapshot["tasks"]}
            awaited: set[str] = set()
            for task in asyncio.all_tasks():
                record = records[str(tracker.id_of(task))]
                graph = asyncio.capture_call_graph(task)  # type: ignore[attr-defined]
                assert graph is not None
                expected = {str(tracker.id_of(entry.future)) for entry in graph.awaited_by}
                assert set(record["awaited_by"]) == expected, task.get_name()
                if expected:
                    awaited.add(task.get_name())
            # every kind of edge was there to compare
            assert awaited == {
                "child",
                "gathered-1",
                "gathered-2",
                "shielded",
                "member-False-0",
                "member-False-1",
                "member-True-0",
                "member-True-1",
                "waited-1",
                "waited-2",
                "completed-1",
            }
        finally:
            event.set()
            leave_body.set()
            await asyncio.gather(*made, return_exceptions=True)
            tracker.uninstall()

    _run(scenario)


# --- failed tasks: the traceback and whether anyone retrieved the exception -------------------

#: The task classes the agent may meet: the C Task and asyncio's Python one.
TASK_CLASSES = [asyncio.Task, *([tasks._PyTask] if hasattr(tasks, "_PyTask") else [])]


@pytest.mark.parametrize("task_class", TASK_CLASSES, ids=lambda cls: cls.__module__)
def test_log_traceback_says_whether_a_failed_tasks_exception_was_retrieved_and_reading_keeps_it(
    task_class: type[Any],
) -> None:
    # failures.FailureNote.retrieved, tracker.Tracker._note_failure
    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def fails() -> None:
            raise ValueError("no")

        def make(name: str) -> Any:
            return task_class(fails(), loop=loop, name=name)

        by_result, by_exception, by_await = make("result"), make("exception"), make("await")
        for task in (by_result, by_exception, by_await):
            await _until(task.done, "the task failed")
            # reading the flag, the exception and its traceback leaves the flag as it was
            for _ in range(3):
                assert task._log_traceback is True
                assert type(task._exception) is ValueError
                assert task._exception.__traceback__ is not None
        with pytest.raises(ValueError, match=r"^no$"):
            by_result.result()
        assert by_result._log_traceback is False
        assert type(by_exception.exception()) is ValueError
        assert by_exception._log_traceback is False
        with pytest.raises(ValueError, match=r"^no$"):
            await by_await
        assert by_await._log_traceback is False
        # gather and a TaskGroup retrieve it too (through exception())
        gathered = make("gathered")
        await asyncio.gather(gathered, return_exceptions=True)
        assert gathered._log_traceback is False

    _run(scenario)


@pytest.mark.parametrize("task_class", TASK_CLASSES, ids=lambda cls: cls.__module__)
def test_a_collected_unretrieved_task_is_reported_through_its_loops_call_exception_handler(
    task_class: type[Any],
) -> None:
    # failures.UnretrievedWatch: asyncio looks the method up on the loop object itself, and
    # the task is still reachable through a weak reference while it reports (no cycle)
    async def scenario() -> None:
        loop: Any = asyncio.get_running_loop()
        reports: list[tuple[str, Any, Any, bool]] = []
        holder: dict[str, Any] = {}

        def watch(context: dict[str, Any]) -> None:
            future = context.get("future")
            reports.append(
                (context["message"], future, context.get("exception"), holder["ref"]() is future)
            )

        loop.call_exception_handler = watch
        try:

            async def fails() -> None:
                raise RuntimeError("lost")

            async def retrieved() -> None:
                raise RuntimeError("seen")

            task = task_class(fails(), loop=loop)
            holder["ref"] = weakref.ref(task)
            await _until(task.done, "the task failed")
            error = task._exception
            del task
            gc.collect()
            assert len(reports) == 1
            message, _future, exception, alive = reports[0]
            assert message.endswith("exception was never retrieved") and alive
            assert exception is error
            seen = task_class(retrieved(), loop=loop)
            holder["ref"] = weakref.ref(seen)
            await asyncio.gather(seen, return_exceptions=True)
            del seen
            gc.collect()
            assert len(reports) == 1  # retrieved: nothing reported
        finally:
            del loop.call_exception_handler


# --- what reach.py counts: references among a waiting task's objects ------------------------------


def test_a_pending_task_nothing_references_is_garbage_the_registry_holds_it_weakly() -> None:
    # reach: `unreferenced` means the collector may destroy the task ("Task was destroyed but
    # it is pending!"); asyncio's registry of tasks (a WeakSet, or C lists from 3.14) must not
    # keep it alive
    async def scenario() -> None:
        async def forever() -> None:
            await asyncio.Future()

        gc.disable()
        try:
            alive = weakref.ref(_spawn(forever(), name="leak"))
            await _until(lambda: alive() is not None and alive()._fut_waiter is not None, "wait")
            assert alive() in asyncio.all_tasks()
            gc.collect()
            assert alive() is None
        finally:
            gc.enable()

    _run(scenario)


# --- lock holders -------------------------------------------------------------------------------


class _Assignments:
    """A `_locked` data descriptor like the agent's (taskscope.agent.locks): records each
    assignment with the task current at that moment; reads find the instance dict."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, bool, Any]] = []

    def __set__(self, lock: Any, value: bool) -> None:
        lock.__dict__["_locked"] = value
        self.seen.append((lock, value, asyncio.current_task()))


def test_lock_locked_is_set_true_by_the_acquiring_task_and_false_by_release() -> None:
    # locks._LockedSlot: True assigned by the task that takes the lock (fast path and after
    # being woken), False by release (whoever calls it); reads never reach the descriptor
    from taskscope.agent import locks as holder_notes

    holder_notes.uninstall()  # an agent another test left installed would see them too
    assert "_locked" not in locks.Lock.__dict__
    early: Any = asyncio.Lock()  # made before the descriptor: behaves the same
    slot = _Assignments()
    locks.Lock._locked = slot  # type: ignore[attr-defined]
    try:

        async def scenario() -> None:
            lock: Any = asyncio.Lock()
            assert lock.__dict__["_locked"] is False

            async def take(which: Any) -> None:
                async with which:
                    await asyncio.sleep(0)

            for which in (lock, early):
                slot.seen.clear()
                first = _spawn(take(which), name="first")
                second = _spawn(take(which), name="second")
                await asyncio.gather(first, second)
                assert [(value, task) for _lock, value, task in slot.seen] == [
                    (True, first),  # fast path
                    (False, first),
                    (True, second),  # woken, then takes it itself
                    (False, second),
                ]
                assert all(seen_lock is which for seen_lock, _value, _task in slot.seen)
                assert which.locked() is False and which._locked is False
            # a Condition's lock is a Lock, taken by the task that enters the condition
            condition: Any = asyncio.Condition()
            slot.seen.clear()

            async def enter() -> None:
                async with condition:
                    pass

            entering = _spawn(enter())
            await entering
            assert [(value, task) for _lock, value, task in slot.seen] == [
                (True, entering),
                (False, entering),
            ]
            assert slot.seen[0][0] is condition._lock

        _run(scenario)
    finally:
        del locks.Lock._locked  # type: ignore[attr-defined]
    assert "_locked" not in locks.Lock.__dict__
    assert early._locked is False


def test_the_body_of_async_with_keeps_aexit_on_the_stack_the_gc_sees() -> None:
    # locks.held_in_stacks: a coroutine suspended in the body of `async with lock:` lists, among
    # its referents (its frame's locals, then its value stack), `lock.__aexit__` bound (3.11-3.13)
    # or `_ContextManagerMixin.__aexit__` followed by the lock (3.14+: LOAD_SPECIAL); one that
    # waits to enter has it too, and awaits the `__aenter__` coroutine; `Condition._lock` is the
    # lock `async with condition` takes and `Condition.wait` gives back
    aexit = locks._ContextManagerMixin.__aexit__  # type: ignore[attr-defined]

    def exits_on_stack(coro: Any) -> list[Any]:
        referents = gc.get_referents(coro)
        found = []
        for index, item in enumerate(referents):
            if isinstance(item, MethodType) and item.__func__ is aexit:
                found.append(item.__self__)
            elif item is aexit:
                found.append(referents[index + 1])
        return found

    async def scenario() -> None:
        lock: Any = asyncio.Lock()
        condition: Any = asyncio.Condition()
        release = asyncio.Event()

        async def body(which: Any) -> None:
            async with which:
                await release.wait()

        async def waits(which: Any) -> None:
            async with which:
                await which.wait()

        holder = _spawn(body(lock))
        waiting = _spawn(waits(condition))
        await asyncio.sleep(0)
        entering = _spawn(body(lock))
        await asyncio.sleep(0)
        assert exits_on_stack(holder.get_coro()) == [lock]
        assert exits_on_stack(entering.get_coro()) == [lock]
        assert holder.get_coro().cr_await.cr_code is release.wait.__code__
        aenter_code = locks._ContextManagerMixin.__aenter__.__code__  # type: ignore[attr-defined]
        assert entering.get_coro().cr_await.cr_code is aenter_code
        assert exits_on_stack(waiting.get_coro()) == [condition]
        in_wait = waiting.get_coro().cr_await
        assert in_wait.cr_code is asyncio.Condition.wait.__code__
        assert condition in gc.get_referents(in_wait)
        assert isinstance(condition._lock, asyncio.Lock) and not condition._lock.locked()
        release.set()
        async with condition:
            condition.notify_all()
        await asyncio.gather(holder, entering, waiting)

    _run(scenario)


def test_a_semaphore_is_decremented_by_the_releasing_task_for_the_task_it_wakes() -> None:
    # locks (module docstring): why Semaphore holders are not noted
    async def scenario() -> None:
        semaphore: Any = asyncio.Semaphore(1)
        changes: list[tuple[int, Any]] = []
        await semaphore.acquire()
        waiter = _spawn(semaphore.acquire(), name="waiter")
        await _suspended(waiter)
        before = semaphore._value
        me = asyncio.current_task()
        semaphore.release()
        changes.append((semaphore._value, me))
        await waiter
        # release() gave 1 back and took it again for the waiter, in this task
        assert before == 0 and changes == [(0, me)]
        semaphore.release()


def test_a_waiting_tasks_chain_lists_every_reference_it_holds_to_the_gc() -> None:
    # reach._chain_members, reach._judge: the references among a task waiting on an Event are
    # all listed by gc.get_referents of the task, its future, the future's wakeup, its
    # coroutines (their locals, the FutureIter on the stack), the Event and its deque: with
    # nothing else holding them, each one's refcount is exactly what those list
    from taskscope.agent import reach

    async def scenario() -> None:
        async def wait_on(event: asyncio.Event) -> None:
            await event.wait()

        task = _spawn(wait_on(asyncio.Event()), name="waiter")
        assert type(await _suspended(task)) in reach._FUTURE_TYPES
        cluster = reach._build_cluster(task, held_by_look=set())
        assert cluster is not None
        kinds = [type(member).__name__ for member in cluster.members]
        assert kinds[1:4] == ["Task", "Future", "builtin_function_or_method"]
        assert {"coroutine", "Event", "deque"} <= set(kinds)
        event_at = kinds.index("Event")
        assert list(cluster.members[event_at]._waiters) == [task._fut_waiter]
        verdict = reach._judge(cluster)
        # the test's `task` variable holds the task: referenced, but its future is not reached
        assert verdict == ([False], [True])
        await _finish(task)

    _run(scenario)


def test_async_with_keeps_the_bound_aexit_and_f_locals_leaves_a_dict_on_the_coroutine() -> None:
    # reach._chain_members: the references to a lock from a frame inside `async with lock`
    # include the bound `__aexit__` on its stack (3.14+: the lock itself); reading f_locals
    # (3.11, 3.12) leaves a dict of the locals that the coroutine holds (3.13+: a proxy)
    async def scenario() -> None:
        lock = asyncio.Lock()
        await lock.acquire()

        async def wants(lock: asyncio.Lock) -> None:
            async with lock:
                pass

        task = _spawn(wants(lock))
        await _suspended(task)
        coro = task._coro
        referents = gc.get_referents(coro)
        exits = [r for r in referents if type(r) is MethodType and r.__self__ is lock]
        if sys.version_info < (3, 14):
            assert [method.__name__ for method in exits] == ["__aexit__"]
        else:  # the function and its `self` apart on the stack: the lock a referent again
            assert exits == []
            assert sum(1 for r in referents if r is lock) == 2
            assert locks.Lock.__aexit__ in referents
        assert coro.cr_frame.f_locals["lock"] is lock
        dicts = [r for r in gc.get_referents(coro) if type(r) is dict]
        if sys.version_info < (3, 13):
            assert [list(d) for d in dicts] == [["lock"]]
        else:
            assert dicts == []
        lock.release()
        await task

    _run(scenario)


def test_primitives_keep_the_futures_of_their_waiters_in_deques() -> None:
    # reach._build_cluster (`_WAITER_ATTRIBUTES`): Event, Lock, Condition and Semaphore in
    # `_waiters`, a Queue in `_getters` and `_putters`, each waiting task's future in them
    async def scenario() -> None:
        event, lock, condition = asyncio.Event(), asyncio.Lock(), asyncio.Condition()
        semaphore, queue = asyncio.Semaphore(0), asyncio.Queue[int](maxsize=1)
        await lock.acquire()

        async def on_condition() -> None:
            async with condition:
                await condition.wait()

        waits = {
            "event": (event, "_waiters", _spawn(event.wait())),
            "lock": (lock, "_waiters", _spawn(lock.acquire())),
            "condition": (condition, "_waiters", _spawn(on_condition())),
            "semaphore": (semaphore, "_waiters", _spawn(semaphore.acquire())),
            "queue": (queue, "_getters", _spawn(queue.get())),
        }
        for primitive, attribute, task in waits.values():
            future = await _suspended(task)
            holder = getattr(primitive, attribute)
            assert type(holder) is collections.deque and list(holder) == [future]
        full = asyncio.Queue[int](maxsize=1)
        full.put_nowait(1)
        putter = _spawn(full.put(2))
        future = await _suspended(putter)
        assert list(full._putters) == [future]
        lock.release()
        await _finish(*(task for _p, _a, task in waits.values()), putter)


# --- step timing and the stall watchdog (taskscope.agent.steps) ------------------------------


@pytest.mark.parametrize("task_class", TASK_CLASSES, ids=lambda cls: cls.__module__)
def test_every_step_and_callback_runs_through_handle_run(task_class: type[Any]) -> None:
    # `StepTimer.install` replaces `Handle._run` on the class (a Python function, which
    # TimerHandle inherits); `StepTimer.locate` finds a step by its code on a thread's stack.
    assert type(asyncio.events.Handle.__dict__["_run"]) is FunctionType
    assert "_run" not in asyncio.events.TimerHandle.__dict__
    seen: list[tuple[Any, Any]] = []
    original = asyncio.events.Handle._run

    def spy(self: Any) -> None:
        seen.append((self._callback, getattr(self._callback, "__self__", None)))
        original(self)

    async def child() -> None:
        await asyncio.sleep(0)  # a step scheduled by the task itself
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.001, future.set_result, 1)
        await future  # a wake-up scheduled by the future

    async def scenario() -> None:
        task = task_class(child(), loop=asyncio.get_running_loop(), name="child")
        await task
        # `StepTimer._make_timed_run`: the callback of each step of a task is a method of
        # that very task, its `__self__`: on the C task, `__step` through a
        # TaskStepMethWrapper and `__wakeup` as the builtin `task_wakeup`; on the Python
        # task, the bound methods `__step` and `__wakeup`.
        owned = [callback for callback, owner in seen if owner is task]
        assert len(owned) >= 3, seen
        if task_class is tasks._CTask:
            assert any(type(callback).__name__ == "TaskStepMethWrapper" for callback in owned)
            assert any(getattr(callback, "__name__", "") == "task_wakeup" for callback in owned)
        else:
            names = {callback.__func__.__name__ for callback in owned}
            assert names == {"__step", "__wakeup"}, names

    asyncio.events.Handle._run = spy  # type: ignore[method-assign]
    try:
        _run(scenario)
    finally:
        asyncio.events.Handle._run = original  # type: ignore[method-assign]


def test_a_loop_thread_in_a_step_has_handle_run_then_run_once_on_its_stack() -> None:
    # `StepTimer.locate` walks a loop thread's stack from its top: the frames of the step,
    # then `Handle._run`, then `BaseEventLoop._run_once` (where it stops when idle).
    handle_run = asyncio.events.Handle._run.__code__
    run_once = base_events.BaseEventLoop._run_once.__code__
    found: list[list[CodeType]] = []

    def inside() -> None:
        frame: FrameType | None = sys._getframe()
        codes = []
        while frame is not None:
            codes.append(frame.f_code)
            frame = frame.f_back
        found.append(codes)

    async def scenario() -> None:
        asyncio.get_running_loop().call_soon(inside)
        await asyncio.sleep(0.01)

    _run(scenario)
    codes = found[0]
    assert codes[0] is inside.__code__
    assert codes[1] is handle_run
    assert codes[2] is run_once


def test_current_task_of_a_loop_answers_from_another_thread() -> None:
    # `StepTimer._name_step` and `_ongoing_stall`: the task a blocked loop runs, asked from
    # the agent's thread while the loop's thread is inside the step.
    answers: list[Any] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        asker = threading.Thread(target=lambda: answers.append(asyncio.current_task(loop)))
        asker.start()
        asker.join()  # the loop's thread blocks here, inside this task's step
        assert answers == [me]

    _run(scenario)
