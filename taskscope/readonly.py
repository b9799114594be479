"""A read-only look at a Python 3.14+ process: its tasks read from its memory, no code run in it.

The standard library's `_remote_debugging` module (what `python -m asyncio pstree` uses) reads
every pending task, its coroutine stack and who awaits it from another process's memory. It
must run under the target's exact minor version, so the reader below runs in an interpreter
of the target's own (inside the target's root when that is not ours), and prints plain JSON
that this module turns into a schema-1 snapshot. What memory cannot tell (what a leaf task
waits on, who created a task, the tasks that finished, a loop's lag) is left out and named
in the snapshot's `read_only` field; cancelling needs the agent.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

from taskscope.attach.interpreter import matching_interpreter, run_as_target
from taskscope.attach.roots import target_root
from taskscope.attach.target import REMOTE_EXEC_VERSION, TargetInfo, inspect_target
from taskscope.client import ClientError
from taskscope.process_facts import command_line as _command_line
from taskscope.protocol import (
    SNAPSHOT_SCHEMA,
    WireAwaiting,
    WireFrame,
    WireLoop,
    WireSnapshot,
    WireTask,
)

#: What a read-only look cannot know, as listed in the snapshot's `read_only` field.
NOT_KNOWN = ("leaf_awaiting", "creators", "history", "loop_state", "cancel")

#: Run under the target's own interpreter (`attach.interpreter.run_as_target`): reads the task graph
#: and prints it as JSON, with the reader's exact version. Frames come innermost first.
_READER = """\
import json, _remote_debugging

def frames(call_stack):
    out = []
    for frame in call_stack:
        line = getattr(frame, "lineno", None)
        if line is None:
            line = getattr(getattr(frame, "location", None), "lineno", None)
        out.append([str(frame.funcname), str(frame.filename), line])
    return out

def coroutine_frames(coroutine_stack):
    return [entry for coroutine in coroutine_stack for entry in frames(coroutine.call_stack)]

result = []
for thread in _remote_debugging.RemoteUnwinder(pid).get_all_awaited_by():
    tasks = [
        {
            "address": task.task_id,
            "name": str(task.task_name),
            "stack": coroutine_frames(task.coroutine_stack),
            "awaited_by": [
                {"address": awaiter.task_name, "stack": frames(awaiter.call_stack)}
                for awaiter in task.awaited_by
            ],
        }
        for task in thread.awaited_by
    ]
    if tasks or thread.thread_id:
        result.append({"thread_id": thread.thread_id, "tasks": tasks})
json.dump({"python": sys.version.split()[0], "threads": result}, sys.stdout)
"""


class ReadOnlyUnavailable(ClientError):
    """A read-only look is not possible on this process; the message says why."""


def read_snapshot(pid: int, *, timeout: float = 10.0) -> WireSnapshot:
    """A schema-1 snapshot of the pending tasks of `pid`, read from its memory."""
    info = inspect_target(pid)
    if info.version < REMOTE_EXEC_VERSION:
        raise ReadOnlyUnavailable(
            f"a read-only look needs Python 3.14 or newer in the target; process {pid} runs "
            f"{info.version[0]}.{info.version[1]}: leave out --read-only to attach the agent"
        )
    python, threads = _run_reader(info, timeout)
    return snapshot_from_threads(pid, python, threads)


def _run_reader(info: TargetInfo, timeout: float) -> tuple[str, list[dict[str, Any]]]:
    root = target_root(info.pid)
    if root is not None and os.geteuid() != 0:
        raise ReadOnlyUnavailable(
            f"process {info.pid} runs in another root (a container or chroot): "
            "run taskscope as root to read it"
        )
    interpreter = matching_interpreter(info, root)
    if interpreter is None:
        raise ReadOnlyUnavailable(
            f"a read-only look at process {info.pid} needs python{info.version[0]}."
            f"{info.version[1]} (its own version) installed where taskscope can run it"
        )
    try:
        result = run_as_target(info, interpreter, _READER, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ReadOnlyUnavailable(
            f"reading process {info.pid}'s memory took more than {timeout:.0f} s"
        ) from None
    detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
    if result.returncode == 4:
        raise ReadOnlyUnavailable(
            f"not permitted to read process {info.pid}'s memory: run taskscope as its user "
            "or as root (and check /proc/sys/kernel/yama/ptrace_scope)"
        )
    if result.returncode == 5:
        raise ReadOnlyUnavailable(f"process {info.pid} exited while it was being read")
    if result.returncode != 0:
        raise ReadOnlyUnavailable(f"could not read process {info.pid}'s tasks: {detail}")
    try:
        answer = json.loads(result.stdout)
        python, threads = str(answer["python"]), answer["threads"]
    except (ValueError, KeyError, TypeError):
        raise ReadOnlyUnavailable(f"the reader of process {info.pid} answered nonsense") from None
    if not isinstance(threads, list):
        raise ReadOnlyUnavailable(f"the reader of process {info.pid} answered nonsense")
    return python, threads


def _frame(raw: list[Any]) -> WireFrame:
    function, file, line = raw
    return {"function": str(function), "file": str(file), "line": line}


def snapshot_from_threads(pid: int, python: str, threads: list[dict[str, Any]]) -> WireSnapshot:
    """The schema-1 snapshot for the reader's JSON: tasks numbered in the order read, each
    under its thread's loop, with who awaits it; what a task awaits is known only when it is
    another task (the reverse of awaited-by)."""
    numbers: dict[int, str] = {}
    for thread in threads:
        for task in thread["tasks"]:
            numbers.setdefault(task["address"], str(len(numbers) + 1))
    names = {
        numbers[task["address"]]: task["name"] for thread in threads for task in thread["tasks"]
    }
    awaits: dict[str, list[str]] = {}
    tasks: list[WireTask] = []
    loops: list[WireLoop] = []
    for thread in threads:
        if not thread["tasks"]:
            # No task of its own: no event loop to show (3.15's reader lists every thread,
            # asyncio or not; a loop whose asyncio.run has a main task has one at least).
            continue
        loop_id = str(thread["thread_id"])
        count = 0
        for task in thread["tasks"]:
            number = numbers[task["address"]]
            stack = [_frame(frame) for frame in reversed(task["stack"])]
            awaited_by = []
            for awaiter in task["awaited_by"]:
                awaiter_number = numbers.get(awaiter["address"])
                if awaiter_number is not None and awaiter_number not in awaited_by:
                    awaited_by.append(awaiter_number)
                    awaits.setdefault(awaiter_number, []).append(number)
            tasks.append(
                {
                    "id": number,
                    "loop": loop_id,
                    "name": task["name"],
                    "state": "pending",
                    "coro": stack[0]["function"] if stack else "?",
                    "stack": stack,
                    "awaiting": None,
                    "awaited_by": awaited_by,
                    "parent": None,
                    "created_at": None,
                    "finished_at": None,
                }
            )
            count += 1
        loops.append(
            {
                "id": loop_id,
                "thread_id": thread["thread_id"],
                "thread_name": "MainThread" if thread["thread_id"] == pid else None,
                "running": True,
                "closed": False,
                "blocked_for": None,
                "lag": None,
                "blocking_stack": [],
                "type": "unknown (read-only look)",
                "tasks": count,
            }
        )
    for record in tasks:
        record["awaiting"] = _awaiting(record, awaits.get(record["id"], []), names)
    snapshot: WireSnapshot = {
        "schema": SNAPSHOT_SCHEMA,
        "pid": pid,
        "python": python,
        "taken_at": time.time(),
        "loops": loops,
        "tasks": tasks,
        "cycles": _cycles(awaits),
        "history_limit": 0,
        "read_only": list(NOT_KNOWN),
    }
    return snapshot


def _awaiting(record: WireTask, awaited: list[str], names: dict[str, str]) -> WireAwaiting:
    if len(awaited) == 1:
        return {"kind": "task", "tasks": awaited, "object": {"task": names[awaited[0]]}}
    if awaited:
        return {"kind": "tasks", "tasks": awaited}
    innermost = record["stack"][-1]["function"] if record["stack"] else "?"
    # What it waits on cannot be read from memory alone: only where it is suspended.
    return {"kind": "unknown", "tasks": [], "object": {"function": innermost, "read_only": True}}


def _cycles(awaits: dict[str, list[str]]) -> list[list[str]]:
    from taskscope.agent.cycles import find_cycles

    edges = {int(task): [int(other) for other in others] for task, others in awaits.items()}
    return [[str(number) for number in cycle] for cycle in find_cycles(edges)]


def command_line(pid: int) -> list[str]:
    """The target's argv, as the agent's hello gives it."""
    return _command_line(pid) or []
