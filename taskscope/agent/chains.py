"""Walks a task's coroutine chain into its frames, and makes the wire form of a stack.

Through nested coroutines, async generators (their `asend` hides the generator) and
generator-based awaits, reading plain attributes only. The wire stacks of suspension points
are cached (`_stack_entry`), as are tasks' creation sites (`_origin`).
"""

from __future__ import annotations

import asyncio
import gc
import sys
from types import AsyncGeneratorType, CodeType, CoroutineType, FrameType, GeneratorType
from typing import Any, NamedTuple

from taskscope.agent.awaiting import PlanStep, code_at, plan_cacheable, plan_chain
from taskscope.agent.tracker import Site, task_coro
from taskscope.protocol import WireFrame

MAX_STACK_DEPTH = 200


def _asend_types() -> tuple[type, ...]:
    async def probe() -> Any:
        yield None

    # Creating asend() calls this thread's async generator hooks: a running loop would adopt
    # the probe and later schedule its finalisation as a task. Switch them off meanwhile.
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(None, None)
    try:
        agen = probe()
        asend = agen.asend(None)
        athrow = agen.athrow(GeneratorExit)
        kinds = (type(asend), type(athrow))
        asend.close()
        athrow.close()
    finally:
        sys.set_asyncgen_hooks(*hooks)
    return kinds


_ASEND_TYPES = _asend_types()


def _asend_generator(obj: Any) -> Any:
    """The async generator behind an `asend`/`athrow` awaitable: it exposes no attribute for
    it, but holds a reference the collector can list."""
    for referent in gc.get_referents(obj):
        if type(referent) is AsyncGeneratorType:
            return referent
    return None


def walk_frames(coro: Any) -> list[FrameType]:
    """The frames of a coroutine chain, outermost first: through nested coroutines, async
    generators (their `asend` hides the generator) and generator-based awaits."""
    return _chain(coro)[0]


def _yield_offsets(code: CodeType) -> list[int]:
    """The offsets of `code`'s YIELD_VALUE instructions: where a coroutine of it can be
    suspended (`dis` is loaded already in a program that imported asyncio)."""
    import dis

    return [op.offset for op in dis.get_instructions(code) if op.opname == "YIELD_VALUE"]


def _suspended_lasti_shift() -> int | None:
    """What a suspended coroutine's `f_lasti` says against the offset of the YIELD_VALUE it is
    suspended at: 0 on 3.11-3.12, the next instruction (+2) from 3.13. Measured here, on a
    chain of two coroutines suspended as a task's are; None (every frame is read) when the
    two disagree or the measure fails."""

    class _Pause:
        def __await__(self) -> Any:
            yield None

    async def inner() -> None:
        await _Pause()

    async def outer() -> None:
        await inner()

    try:
        coro: Any = outer()
        try:
            coro.send(None)
            shifts = set()
            for owner in (coro, coro.cr_await):
                yields = _yield_offsets(owner.cr_code)
                if len(yields) != 1 or not owner.cr_suspended:
                    return None
                shifts.add(owner.cr_frame.f_lasti - yields[0])
        finally:
            coro.close()
        return shifts.pop() if len(shifts) == 1 else None
    except Exception:
        return None


_LASTI_SHIFT = _suspended_lasti_shift()
#: id(code) -> (the code, kept so that the id stays its own; the `f_lasti` of a coroutine of
#: it suspended at an await, when the code has one place to suspend at, else -1).
_ONE_YIELD: dict[int, tuple[CodeType, int]] = {}


#: Where a suspended coroutine of `asyncio.sleep` is, by what it awaits: `__sleep0()` (a
#: generator of that code) at its first await, the future at its second (the `f_lasti`s its
#: frame would say); None when sleep is not made that way on this Python.
_SLEEP_CODE: CodeType | None = getattr(asyncio.tasks.sleep, "__code__", None)
_SLEEP0_CODE: CodeType | None = getattr(getattr(asyncio.tasks, "__sleep0", None), "__code__", None)


def _sleep_places() -> tuple[int, int] | None:
    if _LASTI_SHIFT is None or _SLEEP_CODE is None or _SLEEP0_CODE is None:
        return None
    try:
        yields = _yield_offsets(_SLEEP_CODE)
    except Exception:
        return None
    if len(yields) != 2:
        return None
    return yields[0] + _LASTI_SHIFT, yields[1] + _LASTI_SHIFT


_SLEEP_PLACES = _sleep_places()
#: `_ONE_YIELD`'s value for asyncio.sleep's code: its place is told by what it awaits.
_BY_AWAITED = -2


def _one_yield_lasti(code: CodeType) -> int:
    """Where a suspended coroutine of `code` is, when it can be at one place only: the
    `f_lasti` its frame would say, without the frame (see `_chain`); `_BY_AWAITED` for
    asyncio.sleep (see `_SLEEP_PLACES`); -1 otherwise."""
    lasti = -1
    if _LASTI_SHIFT is not None:
        try:
            yields = _yield_offsets(code)
            if len(yields) == 1:
                lasti = yields[0] + _LASTI_SHIFT
            elif code is _SLEEP_CODE and _SLEEP_PLACES is not None:
                lasti = _BY_AWAITED
        except Exception:
            lasti = -1
    if len(_ONE_YIELD) > 50_000:
        _ONE_YIELD.clear()
    _ONE_YIELD[id(code)] = (code, lasti)
    return lasti


def lazy_chain(coro: Any) -> tuple[list[FrameType | None], list[Any], tuple[int, ...]]:
    """`_chain` without the frame objects it can do without: a coroutine suspended in code
    with a single place to suspend at (one `await`, as many of a program's coroutines and
    asyncio's Queue.get, Lock.acquire or Event.wait have) is where that place is, told by
    its code alone, and its frame is left unmade (None in the list; `awaiting.frame_at`
    makes it when a description needs it). Reading `cr_frame` makes a frame object that
    then lives as long as the coroutine: about 190 bytes per coroutine, kept after the look
    (CPython leaves such frame objects untracked by its collector)."""
    if _LASTI_SHIFT is None:
        return _every_frame(coro)
    frames: list[FrameType | None] = []
    owners: list[Any] = []
    key: list[int] = []
    obj = coro
    one_yield = _ONE_YIELD
    while type(obj) is CoroutineType and len(frames) < MAX_STACK_DEPTH:
        code = obj.cr_code
        known = one_yield.get(id(code))
        lasti = known[1] if known is not None and known[0] is code else _one_yield_lasti(code)
        if lasti != -1 and obj.cr_suspended:
            if lasti == _BY_AWAITED:
                awaited = obj.cr_await
                first = type(awaited) is GeneratorType and awaited.gi_code is _SLEEP0_CODE
                lasti = _SLEEP_PLACES[0 if first else 1]  # type: ignore[index]
            frames.append(None)
        else:
            frame = obj.cr_frame
            if frame is None:
                return frames, owners, tuple(key)
            frames.append(frame)
            lasti = frame.f_lasti
        owners.append(obj)
        key += (id(code), lasti)
        obj = obj.cr_await
    if obj is None:
        return frames, owners, tuple(key)
    if type(obj) is CoroutineType:
        return _every_frame(coro)  # deeper than MAX_STACK_DEPTH (a recursion): the long way
    _walk_on(obj, frames, owners, key)
    return frames, owners, tuple(key)


def _every_frame(coro: Any) -> tuple[list[FrameType | None], list[Any], tuple[int, ...]]:
    """`lazy_chain` the long way: `_chain`, every frame read."""
    return _chain(coro)  # type: ignore[return-value]  # a list of frames is one of frames or None


def _chain(
    coro: Any, gap: list[tuple[int, int]] | None = None
) -> tuple[list[FrameType], list[Any], tuple[int, ...]]:
    """Like `walk_frames`, also giving the coroutine (or generator) that runs each frame, and
    a key naming where the chain is suspended: id(code), f_lasti of every frame. Same key,
    same stack and same classification plan (the cache entry keeps the code objects alive,
    so their ids cannot be reused while it exists). A chain too deep has its middle left
    out: where, and how much, is appended to `gap` (see `frames_and_gap`)."""
    frames: list[FrameType] = []
    owners: list[Any] = []
    key: list[int] = []
    obj = coro
    # Fast path: native coroutines awaiting native coroutines, the common chain.
    while type(obj) is CoroutineType and len(frames) < MAX_STACK_DEPTH:
        frame = obj.cr_frame
        if frame is None:
            return frames, owners, tuple(key)
        frames.append(frame)
        owners.append(obj)
        key += (id(frame.f_code), frame.f_lasti)
        obj = obj.cr_await
    if obj is None:
        return frames, owners, tuple(key)
    if type(obj) is CoroutineType:
        return _deep_chain(frames, owners, obj, gap)
    _walk_on(obj, frames, owners, key)
    return frames, owners, tuple(key)


def _walk_on(obj: Any, frames: list[Any], owners: list[Any], key: list[int]) -> None:
    """The rest of a chain from `obj`, which is no native coroutine awaiting another (a
    generator, an async generator, a coroutine-like object, or the future at its end), its
    frames read, appended to `frames`, `owners` and `key` (see `_chain`)."""
    for _ in range(MAX_STACK_DEPTH - len(frames)):
        kind = type(obj)
        if kind is CoroutineType:
            frame, nxt = obj.cr_frame, obj.cr_await
        elif obj is None:
            break
        elif kind is GeneratorType:
            frame, nxt = obj.gi_frame, obj.gi_yieldfrom
        elif kind is AsyncGeneratorType:
            frame, nxt = obj.ag_frame, obj.ag_await
        elif kind in _ASEND_TYPES:
            obj = _asend_generator(obj)
            continue
        else:
            frame = getattr(obj, "cr_frame", None)
            if frame is None:
                break
            nxt = getattr(obj, "cr_await", None)
        if frame is None:
            break
        frames.append(frame)
        owners.append(obj)
        key.append(id(frame.f_code))  # hashing a code object hashes its bytecode and consts
        key.append(frame.f_lasti)
        obj = nxt


#: A chain deeper than MAX_STACK_DEPTH keeps its outermost and innermost halves.
_DEEP_CHAIN_LIMIT = 100_000
#: Before the gap's place and size at the end of a deep chain's key (no code has this id).
_GAP_MARK = -1


def _deep_chain(
    frames: list[FrameType], owners: list[Any], rest: Any, gap: list[tuple[int, int]] | None
) -> tuple[list[FrameType], list[Any], tuple[int, ...]]:
    """`_chain` of a chain of coroutines deeper than MAX_STACK_DEPTH (a recursion): the outer
    half of the frames walked, and the innermost half, where the wait is, found by following
    `cr_await` alone (no frame object is made for the coroutines left out)."""
    frames, owners, where = _deep_parts(frames, owners, rest)
    if gap is not None:
        gap.append(where)
    key: list[int] = []
    for frame in frames:
        key += (id(frame.f_code), frame.f_lasti)
    # Where the gap is and how much it leaves out end the key: two recursions of different
    # depths are two stacks. An odd length, which no key of (code, offset) pairs has.
    key += (_GAP_MARK, *where)
    return frames, owners, tuple(key)


def _deep_parts(
    frames: list[FrameType], owners: list[Any], rest: Any
) -> tuple[list[FrameType], list[Any], tuple[int, int]]:
    """`_deep_chain`'s frames and owners, and where its gap is: the index of the first frame
    after it, and how many coroutines it leaves out."""
    tail: list[Any] = []
    obj = rest
    while type(obj) is CoroutineType and len(tail) < _DEEP_CHAIN_LIMIT:
        tail.append(obj)
        obj = obj.cr_await
    half = MAX_STACK_DEPTH // 2
    # The innermost coroutines (and what the last awaits, if it is no coroutine: walked as
    # `_chain` walks it, by `_chain` itself).
    inner_frames, inner_owners, _ = _chain(tail[-half] if len(tail) >= half else tail[0])
    kept_outer = MAX_STACK_DEPTH - len(inner_frames)
    left_out = len(frames) + len(tail) - kept_outer - min(half, len(tail))
    frames = frames[:kept_outer] + inner_frames
    owners = owners[: MAX_STACK_DEPTH - len(inner_owners)] + inner_owners
    return frames, owners, (kept_outer, left_out)


def frames_and_gap(coro: Any) -> tuple[list[FrameType], tuple[int, int] | None]:
    """`walk_frames`, and for a chain deeper than MAX_STACK_DEPTH, whose middle is left out,
    where: the index of the first frame after the gap, and how many coroutines it leaves
    out (None: nothing left out)."""
    gap: list[tuple[int, int]] = []
    frames = _chain(coro, gap)[0]
    return frames, gap[0] if gap else None


def line_at(code: CodeType, lasti: int) -> int | None:
    """The line a frame of `code` suspended at byte offset `lasti` reports as f_lineno."""
    if lasti < 0:
        return code.co_firstlineno
    for start, end, line in code.co_lines():
        if start <= lasti < end:
            return line
    return None


def _stack_entry(
    frames: list[FrameType | None], owners: list[Any], key: tuple[int, ...]
) -> StackEntry:
    """The wire stack and classification plan of a suspension point (a `lazy_chain`), cached
    by its key. The stack is shared by every task suspended there, in every snapshot. A
    tuple, as every sequence in the records the agent keeps (they never change): a list is
    one more object for the host's garbage collector to track, where a tuple of strings is
    dropped from its lists."""
    frame_cache = _FRAME_CACHE
    if len(frame_cache) > 100_000:
        frame_cache.clear()
    codes = tuple(code_at(frames, owners, index) for index in range(len(frames)))
    frame_records: list[WireFrame] = []
    for index, code in enumerate(codes):
        # The line from the key's own f_lasti, not from the frame: it may have moved since.
        frame_key = (code, line_at(code, key[2 * index + 1]))
        entry = frame_cache.get(frame_key)
        if entry is None:
            entry = frame_cache[frame_key] = frame_record(*frame_key)
        frame_records.append(entry)
    stack = tuple(frame_records)
    if len(key) % 2:  # a deep chain's: its gap ends the key (see `_deep_chain`)
        if len(_GAPS) > 10_000:
            _GAPS.clear()
        _GAPS[id(stack)] = (stack, (key[-2], key[-1]))
    plan = plan_chain(codes)
    first_code = codes[plan[0][0]] if plan else None
    result = StackEntry(stack, plan, codes, plan_cacheable(plan), first_code)
    if len(_STACK_CACHE) > 50_000:
        _STACK_CACHE.clear()
    _STACK_CACHE[key] = result
    return result


def stack_gap(stack: tuple[WireFrame, ...]) -> tuple[int, int] | None:
    """Where a stack made by `_stack_entry` leaves coroutines out, and how many (the index of
    the first frame after the gap, the count): a chain deeper than MAX_STACK_DEPTH. None for
    any other stack."""
    if len(stack) < MAX_STACK_DEPTH:
        return None
    known = _GAPS.get(id(stack))
    return known[1] if known is not None and known[0] is stack else None


def _task_frames(task: asyncio.Future[Any]) -> list[FrameType]:
    return walk_frames(task_coro(task))


#: id(creation site) -> (site, its wire form): tasks made at one place share both.
_ORIGINS: dict[int, tuple[Site, tuple[WireFrame, ...]]] = {}


def _origin(site: Site) -> tuple[WireFrame, ...]:
    if not site:
        return _NONE
    known = _ORIGINS.get(id(site))
    if known is not None and known[0] is site:
        return known[1]
    frames = tuple(frame_record(code, line) for code, line in site)
    if len(_ORIGINS) > 10_000:
        _ORIGINS.clear()
    _ORIGINS[id(site)] = (site, frames)
    return frames


def frame_record(code: CodeType, line: int | None) -> WireFrame:
    return {"function": code.co_qualname, "file": code.co_filename, "line": line}


class StackEntry(NamedTuple):
    """What the agent knows of a suspension point (a `_chain` key), shared by every task
    suspended there."""

    stack: tuple[WireFrame, ...]
    plan: tuple[PlanStep, ...]
    #: The code objects the key names by id, kept alive so that the ids stay theirs.
    codes: tuple[CodeType, ...]
    #: Whether tasks suspended there may be described from their notes (`plan_cacheable`).
    cacheable: bool
    #: The code of the plan's first step (None: no plan).
    first_code: CodeType | None


#: (code, line) -> frame record, shared by every task suspended at the same place.
_FRAME_CACHE: dict[tuple[CodeType, int | None], WireFrame] = {}
#: `_chain` key -> StackEntry: see `_stack_entry`.
_STACK_CACHE: dict[tuple[int, ...], StackEntry] = {}
#: id(stack) -> (the stack, its gap), for the stacks of chains too deep to send whole: few.
_GAPS: dict[int, tuple[tuple[WireFrame, ...], tuple[int, int]]] = {}

#: The empty list of every record that has nothing to list: shared, never mutated (records
#: get a new list when they have something).
_NONE: tuple[()] = ()
