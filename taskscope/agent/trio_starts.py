"""Learning of each `trio.run` the moment it starts (Python 3.12+), so that the agent's
instrument is in the run before its first task is spawned: `sys.monitoring` (one tool id,
named "taskscope") reports the return of trio's `setup_runner` (trio/_core/_run.py), which
makes the run's `Runner`, on the run's thread, before the run spawns anything. The program's
objects are left as they are: `trio.run` stays trio's own function.

Until the program has imported trio, the same tool watches the import system's returns from
loading a module (`importlib._bootstrap._load_unlocked`) for trio's `trio._core._run`, then
watches that module's `setup_runner` instead. Only these code objects report anything (local
events): a program that never imports trio pays one call per module it loads, and nothing
else. Python 3.11 has no `sys.monitoring`: there, and when no tool id is free, nothing is
watched and the agent finds runs by looking (trio_runs.beat_trio_runs)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import CodeType, FrameType, ModuleType
from typing import Any

#: The module that defines trio's `run` and `setup_runner`.
RUN_MODULE = "trio._core._run"
#: The tool ids tried, in turn: those `sys.monitoring` names for no kind of tool (debuggers,
#: coverage, profilers and optimizers take 0, 1, 2 and 5).
_TOOL_IDS = (4, 3)
_TOOL_NAME = "taskscope"

_monitoring: Any = getattr(sys, "monitoring", None)
_getframe = sys._getframe
_lock = threading.Lock()

#: The tool id held (None: none), what to call when a run starts, and the code watched.
_tool: int | None = None
_started: Callable[[Any, FrameType | None], None] | None = None
_setup_code: CodeType | None = None
_load_code: CodeType | None = None


def watch_run_starts(started: Callable[[Any, FrameType | None], None]) -> bool:
    """From now on call `started(runner, caller)` on a run's thread as each `trio.run` (or
    `start_guest_run`) has made its `Runner`, before its first task; `caller` is the frame
    that called `setup_runner` (`run`'s, for `trio.run`). Returns whether that is watched
    (False on 3.11, when no tool id is free, or when the import system is not as expected)."""
    global _tool, _started
    if _monitoring is None:
        return False
    with _lock:
        try:
            if _tool is None:
                _tool = _take_tool_id()
                if _tool is None:
                    return False
                _monitoring.register_callback(_tool, _monitoring.events.PY_RETURN, _returned)
            _started = started
            setup = _setup_runner_code(sys.modules.get(RUN_MODULE))
            if setup is not None:
                _watch_setup(setup)
                return True
            bootstrap = sys.modules.get("_frozen_importlib")  # (importlib._bootstrap)
            load = getattr(getattr(bootstrap, "_load_unlocked", None), "__code__", None)
            if not isinstance(load, CodeType):
                _release()
                return False
            _watch_loads(load)
            return True
        except Exception:
            _release()
            return False


def stop_watching_run_starts() -> None:
    """Watch nothing more, and give the tool id back."""
    # (In a fork's child the lock may be held by a thread that did not survive the fork.)
    locked = _lock.acquire(timeout=1.0)
    try:
        _release()
    finally:
        if locked:
            _lock.release()


def run_starts_watched() -> bool:
    return _tool is not None


def _take_tool_id() -> int | None:
    for tool in _TOOL_IDS:
        try:
            _monitoring.use_tool_id(tool, _TOOL_NAME)
        except ValueError:  # another tool holds it
            continue
        return tool
    return None


def _watch_setup(code: CodeType) -> None:
    global _setup_code, _load_code
    _monitoring.set_local_events(_tool, code, _monitoring.events.PY_RETURN)
    _setup_code = code
    if _load_code is not None:
        _monitoring.set_local_events(_tool, _load_code, 0)
        _load_code = None


def _watch_loads(code: CodeType) -> None:
    global _load_code
    _monitoring.set_local_events(_tool, code, _monitoring.events.PY_RETURN)
    _load_code = code


def _release() -> None:
    """(Under `_lock`.) Stop every event, drop the callback, free the tool id."""
    global _tool, _started, _setup_code, _load_code
    tool, _tool = _tool, None
    _started = None
    codes = [code for code in (_setup_code, _load_code) if code is not None]
    _setup_code = _load_code = None
    if tool is None:
        return
    for code in codes:
        try:
            _monitoring.set_local_events(tool, code, 0)
        except Exception:
            pass
    try:
        _monitoring.register_callback(tool, _monitoring.events.PY_RETURN, None)
        _monitoring.free_tool_id(tool)
    except Exception:
        pass


def _setup_runner_code(module: Any) -> CodeType | None:
    """The code of trio's `setup_runner`, once its module has run (read from the module's
    own dict: no attribute hook of the program's runs)."""
    if not isinstance(module, ModuleType):
        return None
    code = getattr(module.__dict__.get("setup_runner"), "__code__", None)
    return code if isinstance(code, CodeType) else None


def _returned(code: CodeType, offset: int, value: Any) -> Any:
    """The callback of `sys.monitoring`'s PY_RETURN, on the thread of the code that returned:
    raises nothing of its own (an exception here would be raised in the program)."""
    try:
        if code is _setup_code:
            started = _started
            if started is not None:
                started(value, _getframe(2))  # (this callback, setup_runner, its caller)
        elif (
            code is _load_code
            and isinstance(value, ModuleType)
            and value.__dict__.get("__name__") == RUN_MODULE
        ):
            setup = _setup_runner_code(value)
            if setup is not None:
                with _lock:
                    if _tool is not None:
                        _watch_setup(setup)
    except Exception:  # (a KeyboardInterrupt arriving meanwhile is the program's)
        pass
    return None
