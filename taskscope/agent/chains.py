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

from taskscope.agent.awaiting import PlanStep, plan_cacheable, plan_chain
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


def _chain(coro: Any) -> tuple[list[FrameType], list[Any], tuple[int, ...]]:
    """Like `walk_frames`, also giving the coroutine (or generator) that runs each frame, and
    a key naming where the chain is suspended: id(code), f_lasti of every frame. Same key,
    same stack and same classification plan (the cache entry keeps the code objects alive,
    so their ids cannot be reused while it exists)."""
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
        return _deep_chain(frames, owners, obj)
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
    return frames, owners, tuple(key)


#: A chain deeper than MAX_STACK_DEPTH keeps its outermost and innermost halves.
_DEEP_CHAIN_LIMIT = 100_000


def _deep_chain(
    frames: list[FrameType], owners: list[Any], rest: Any
) -> tuple[list[FrameType], list[Any], tuple[int, ...]]:
    """`_chain` of a chain of coroutines deeper than MAX_STACK_DEPTH (a recursion): the outer
    half of the frames walked, and the innermost half, where the wait is, found by following
    `cr_await` alone (no frame object is made for the coroutines left out)."""
    tail: list[Any] = []
    obj = rest
    while type(obj) is CoroutineType and len(tail) < _DEEP_CHAIN_LIMIT:
        tail.append(obj)
        obj = obj.cr_await
    half = MAX_STACK_DEPTH // 2
    # The innermost coroutines (and what the last awaits, if it is no coroutine: walked as
    # `_chain` walks it, by `_chain` itself).
    inner_frames, inner_owners, _ = _chain(tail[-half] if len(tail) >= half else tail[0])
    frames = frames[: MAX_STACK_DEPTH - len(inner_frames)] + inner_frames
    owners = owners[: MAX_STACK_DEPTH - len(inner_owners)] + inner_owners
    key: list[int] = []
    for frame in frames:
        key += (id(frame.f_code), frame.f_lasti)
    return frames, owners, tuple(key)


def line_at(code: CodeType, lasti: int) -> int | None:
    """The line a frame of `code` suspended at byte offset `lasti` reports as f_lineno."""
    if lasti < 0:
        return code.co_firstlineno
    for start, end, line in code.co_lines():
        if start <= lasti < end:
            return line
    return None


def _stack_entry(frames: list[FrameType], key: tuple[int, ...]) -> StackEntry:
    """The wire stack and classification plan of a suspension point, cached by its key. The
    stack is shared by every task suspended there, in every snapshot. A tuple, as every
    sequence in the records the agent keeps (they never change): a list is one more object
    for the host's garbage collector to track, where a tuple of strings is dropped from its
    lists."""
    frame_cache = _FRAME_CACHE
    if len(frame_cache) > 100_000:
        frame_cache.clear()
    frame_records: list[WireFrame] = []
    for index, frame in enumerate(frames):
        # The line from the key's own f_lasti, not from the frame: it may have moved since.
        code = frame.f_code
        frame_key = (code, line_at(code, key[2 * index + 1]))
        entry = frame_cache.get(frame_key)
        if entry is None:
            entry = frame_cache[frame_key] = frame_record(*frame_key)
        frame_records.append(entry)
    stack = tuple(frame_records)
    plan = plan_chain(frames)
    codes = tuple(frame.f_code for frame in frames)
    first_code = codes[plan[0][0]] if plan else None
    result = StackEntry(stack, plan, codes, plan_cacheable(plan), first_code)
    if len(_STACK_CACHE) > 50_000:
        _STACK_CACHE.clear()
    _STACK_CACHE[key] = result
    return result


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

#: The empty list of every record that has nothing to list: shared, never mutated (records
#: get a new list when they have something).
_NONE: tuple[()] = ()
