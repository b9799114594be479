"""The in-process agent: tracks tasks and loops, and serves them on a private Unix socket.

Standard library only: it is loaded into programs that never asked for textual or psutil.
`install()` is idempotent and safe from any thread, before or inside a running loop.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import Any

from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.server import AgentServer
from taskscope.agent.tracker import Tracker
from taskscope.agent.trio_runs import stop_watching_trio, watch_trio_starts
from taskscope.protocol import (
    InsecureDirectory,
    WireSnapshot,
    socket_directories,
)

__all__ = [
    "detach",
    "failure",
    "install",
    "is_installed",
    "snapshot",
    "socket_file",
    "task_number",
    "uninstall",
]

DEFAULT_HISTORY = 1000
#: Seconds after a fork before the agent's thread starts again in the parent (3.12, 3.13).
RESUME_DELAY = 0.05
#: From this version on, os.fork() counts threads for its warning before the at-fork hooks
#: that run in the parent, so the agent's thread can start again in one of them.
FORK_WARNING_BEFORE_HOOKS = (3, 14)
_lock = threading.Lock()
_state: dict[str, Any] = {}
_fork_hooks_registered = False
_failure: list[str] = []
#: Set by the attach bootstrap: the modules it imported for the agent (the program did not).
_attach_modules: frozenset[str] = frozenset()


def install(
    *,
    history: int | None = None,
    track_tasks: bool | None = None,
    socket_dir: str | None = None,
    report: bool = True,
    flight_recorder: float | None = None,
    stall_threshold: float | None = None,
    time_steps: bool | None = None,
) -> None:
    """Start the agent in this process (a second call does nothing, except to make a new
    socket if someone deleted the agent's).

    history: how many finished tasks to remember (default 1000, or $TASKSCOPE_HISTORY).
    track_tasks: note each task's creator and how it ended (default on; $TASKSCOPE_TRACK=0
        turns it off). Off, nothing of the agent runs per task: snapshots still show every
        pending task and what it awaits, but no parents, creation sites or finished tasks.
    socket_dir: where to put the socket (default: a private per-user directory; when another
        user made that one first, ~/.taskscope-sockets).
    report: when the agent cannot listen anywhere, say so in one line on stderr. Either way
        install() returns and the program goes on without the agent (see `failure()`).
    flight_recorder: keep the last this many seconds in memory, for `taskscope record PID
        --last` (default off, or $TASKSCOPE_FLIGHT_RECORDER; 0 turns it off). A later call
        with a figure turns it on in a running agent.
    stall_threshold: a step (of a task, or a callback) that holds its loop longer than this
        many seconds is kept as a stall, with the line it was blocked on (default 0.1, or
        $TASKSCOPE_STALL_THRESHOLD). The agent's thread watches for them, at no cost to the
        loops; their start and length are then good to about a quarter of the threshold.
    time_steps: time every step of every loop (default off, or $TASKSCOPE_TIME_STEPS=1):
        each task's steps, busy time, longest step, when it last ran and since when it
        waits, each loop's steps per second and busy share, and exact stalls. It costs the
        loop thread 0.5-1 microsecond per step (README, "Speed"); not with `track_tasks`
        off.
    """
    global _fork_hooks_registered
    with _lock:
        if _state:
            running: AgentServer = _state["server"]
            if _state.get("pid") == os.getpid():
                with contextlib.suppress(OSError, InsecureDirectory):
                    running.ensure_listening()
                running.resume()
                window = _flight_window(flight_recorder)
                if window is not None:
                    running.start_flight_recorder(window)
            return
        if history is None:
            try:
                history = int(os.environ.get("TASKSCOPE_HISTORY", DEFAULT_HISTORY))
            except ValueError:
                history = DEFAULT_HISTORY
        if history < 0:
            raise ValueError("history must be >= 0")
        if track_tasks is None:
            track_tasks = os.environ.get("TASKSCOPE_TRACK", "1").strip().lower() not in (
                "0",
                "no",
                "off",
                "false",
            )
        _failure.clear()
        tracker = Tracker(
            history_limit=history,
            track_tasks=track_tasks,
            stall_threshold=stall_threshold,
            time_steps=time_steps,
        )
        server = _start_server(tracker, socket_dir)
        if server is None:
            if report:
                _say(f"taskscope: agent not started: {_failure[0]}")
            return
        tracker.install()
        tracker.loop_start_listeners.append(server.resume)
        tracker.loop_start_listeners.append(server.wake)  # its stall watchdog looks again
        tracker.on_beat = server.gil.beat  # a loop's heartbeat sees a starved agent thread
        watch_trio_starts(tracker)  # (3.12+) each trio.run's instrument from its first spawn
        server.wake()
        window = _flight_window(flight_recorder)
        if window is not None:
            server.start_flight_recorder(window)
        _state.update(tracker=tracker, server=server, pid=os.getpid())
        atexit.register(_remove_socket_at_exit)
        if not _fork_hooks_registered:
            os.register_at_fork(
                before=_before_fork,
                after_in_parent=_after_fork_in_parent,
                after_in_child=_after_fork_in_child,
            )
            _fork_hooks_registered = True


def _flight_window(seconds: float | None) -> float | None:
    """The flight recorder's window: the figure given, else $TASKSCOPE_FLIGHT_RECORDER; None
    (off) for 0 or less, and for a value that is not a number of seconds (ignored without a
    word: the host's output is not the agent's to write to)."""
    if seconds is None:
        text = os.environ.get("TASKSCOPE_FLIGHT_RECORDER", "").strip()
        if not text:
            return None
        try:
            seconds = float(text)
        except ValueError:
            return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    if not seconds > 0 or seconds == float("inf"):  # also NaN
        return None
    return float(seconds)


def _start_server(tracker: Tracker, socket_dir: str | None) -> AgentServer | None:
    """A listening server in `socket_dir`, else the usual directory, else the fallback."""
    candidates = [socket_dir] if socket_dir is not None else socket_directories()
    for directory in candidates:
        server = AgentServer(tracker, directory)
        try:
            server.start()
        except (OSError, InsecureDirectory) as error:
            _failure.append(_reason(directory, error))
            continue
        _failure.clear()
        return server
    if len(_failure) > 1:
        _failure[:] = ["; ".join(_failure)]
    return None


def _reason(directory: str, error: BaseException) -> str:
    if isinstance(error, InsecureDirectory):
        return f"{error}; remove it or set TASKSCOPE_SOCKET_DIR to a private directory"
    text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return f"cannot listen in {directory}: {text}"


def _say(line: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def failure() -> str | None:
    """Why the last install() could not start the agent, if it could not."""
    return _failure[0] if _failure else None


def uninstall() -> None:
    """Stop the agent and restore the loop hooks and task factories it changed."""
    with _lock:
        if not _state:
            return
        server: AgentServer = _state["server"]
        tracker: Tracker = _state["tracker"]
        _state.clear()
        tracker.on_beat = None
        server.stop()
        tracker.uninstall()
        stop_watching_trio(tracker)
        atexit.unregister(_remove_socket_at_exit)


def detach() -> None:
    """`uninstall()`, and when the agent was loaded by an attach (not imported by the program),
    forget its modules too: the process is left as it was before the attach."""
    global _attach_modules
    imported, _attach_modules = _attach_modules, frozenset()
    uninstall()
    for name in imported:
        sys.modules.pop(name, None)


def is_installed() -> bool:
    return bool(_state)


def socket_file() -> str | None:
    """The path of this process's agent socket, when the agent runs."""
    server = _state.get("server")
    return server.path if server is not None else None


def snapshot(include_finished: bool = True) -> WireSnapshot | None:
    """A schema-1 snapshot of this process (what `taskscope dump` prints), built here and now
    on the calling thread, never one a client was handed a moment ago; None when the agent is
    not installed. For in-process clients such as the pytest plugin, which show it without a
    socket between."""
    server: AgentServer | None = _state.get("server")
    tracker: Tracker | None = _state.get("tracker")
    if server is None or tracker is None:
        return None
    with server._snapshot_lock:  # one builder at a time: they share the tracker's notes
        return SnapshotBuilder(tracker).build(include_finished)


def task_number(task: Any) -> int | None:
    """The number the agent's snapshots give `task` (its record's `id`), or None when the
    agent is not installed."""
    tracker: Tracker | None = _state.get("tracker")
    return tracker.id_of(task) if tracker is not None else None


def _starved_hint(waited: float) -> None:
    """Run on the program's main thread by a client that has waited `waited` seconds for an
    answer while the main thread ran and the process's other threads, the agent's among them,
    did not (`attach.hint_starved_agent`, through the attach's injection): the program keeps
    the agent's thread from the GIL, in waits too short one by one for the agent to see it
    (it runs now and then, and is starved again at each system call), and the switch
    interval is lowered for it (`gil.GilShare.hinted`). Where asyncio loops run, their
    heartbeats judge (they tell a loop busy in short steps from a call that holds the GIL,
    which this cannot): this is for runs no heartbeat of theirs watches, as trio's."""
    server: AgentServer | None = _state.get("server")
    if server is not None and _state.get("pid") == os.getpid() and not server.tracker.loops:
        server.gil.hinted(float(waited))


def _adopt_switch_interval(replaced: float, waited: float) -> None:
    """Called by the attach bootstrap: the code it injected lowered the switch interval from
    `replaced` so that the agent's start-up is not starved, and the start-up's thread waited
    `waited` seconds more than it ran; the agent owns the interval from now on."""
    server: AgentServer | None = _state.get("server")
    if server is not None:
        server.gil.adopt(replaced, waited)


def _remove_socket_at_exit() -> None:
    server = _state.get("server")
    if server is not None and _state.get("pid") == os.getpid():
        server.stop()


def _before_fork() -> None:
    # Fork with the agent's thread stopped: Python 3.12+ warns on stderr about forking a
    # process with threads, and a lock held by that thread would stay locked in the child.
    server = _state.get("server")
    if server is not None and _state.get("pid") == os.getpid():
        with contextlib.suppress(Exception):
            server.pause_for_fork()


def _after_fork_in_parent() -> None:
    server = _state.get("server")
    tracker = _state.get("tracker")
    if server is None or tracker is None or not server.paused():
        return
    if sys.version_info >= FORK_WARNING_BEFORE_HOOKS:
        with contextlib.suppress(Exception):
            server.resume()
        return
    # Not now: 3.12 and 3.13 count the threads for their warning after these hooks. The
    # thread starts again at the next turn of a loop (or when a loop starts, or install()).
    with contextlib.suppress(Exception):
        for _record, loop in tracker.live_loops():
            if loop.is_running():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(loop.call_later, RESUME_DELAY, server.resume)


def _after_fork_in_child() -> None:
    # The agent's thread did not survive the fork: forget the parent's agent entirely, and
    # close its sockets here so that its clients hear EOF as soon as the parent goes.
    server = _state.get("server")
    tracker = _state.get("tracker")
    _state.clear()
    if server is not None:
        with contextlib.suppress(Exception):
            server.close_inherited()
    if tracker is not None:
        with contextlib.suppress(Exception):
            tracker.uninstall()
        with contextlib.suppress(Exception):
            stop_watching_trio(tracker)
