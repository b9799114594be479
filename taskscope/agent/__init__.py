"""The in-process agent: tracks tasks and loops, and serves them on a private Unix socket.

Standard library only: it is loaded into programs that never asked for textual or psutil.
`install()` is idempotent and safe from any thread, before or inside a running loop.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from taskscope.agent.server import AgentServer
from taskscope.agent.tracker import Tracker

__all__ = ["install", "is_installed", "socket_file", "uninstall"]

DEFAULT_HISTORY = 1000
_lock = threading.Lock()
_state: dict[str, Any] = {}
_fork_hook_registered = False


def install(
    *, history: int | None = None, track_tasks: bool | None = None, socket_dir: str | None = None
) -> None:
    """Start the agent in this process (a second call does nothing).

    history: how many finished tasks to remember (default 1000, or $TASKSCOPE_HISTORY).
    track_tasks: note each task's creator and how it ended (default on; $TASKSCOPE_TRACK=0
        turns it off). Off, nothing of the agent runs per task: snapshots still show every
        pending task and what it awaits, but no parents, creation sites or finished tasks.
    socket_dir: where to put the socket (default: a private per-user directory).
    """
    global _fork_hook_registered
    with _lock:
        if _state:
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
        tracker = Tracker(history_limit=history, track_tasks=track_tasks)
        server = AgentServer(tracker, socket_dir)
        tracker.install()
        try:
            server.start()
        except BaseException:
            tracker.uninstall()
            raise
        _state.update(tracker=tracker, server=server, pid=os.getpid())
        atexit.register(_remove_socket_at_exit)
        if not _fork_hook_registered:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_registered = True


def uninstall() -> None:
    """Stop the agent and restore the loop hooks and task factories it changed."""
    with _lock:
        if not _state:
            return
        server: AgentServer = _state["server"]
        tracker: Tracker = _state["tracker"]
        _state.clear()
        server.stop()
        tracker.uninstall()
        atexit.unregister(_remove_socket_at_exit)


def is_installed() -> bool:
    return bool(_state)


def socket_file() -> str | None:
    """The path of this process's agent socket, when the agent runs."""
    server = _state.get("server")
    return server.path if server is not None else None


def _remove_socket_at_exit() -> None:
    server = _state.get("server")
    if server is not None and _state.get("pid") == os.getpid():
        server.stop()


def _after_fork_in_child() -> None:
    # The agent's threads did not survive the fork; forget the parent's agent entirely.
    server = _state.get("server")
    tracker = _state.get("tracker")
    _state.clear()
    if server is not None:
        server.close_inherited()
    if tracker is not None:
        try:
            tracker.uninstall()
        except Exception:
            pass
