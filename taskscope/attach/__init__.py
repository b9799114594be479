"""Loading the agent into a process that never imported taskscope (`load_agent`), and finding
an agent that already listens where the target put it (`agent_socket`).

The injected code only bootstraps: it imports the agent from a private, read-only copy of
taskscope's standard-library-only files (`staging`), starts it, removes the copy's path from
`sys.path`, and reports how it went in a status file next to the socket (`payload`). The agent
then finds the loops and tasks that already exist. How the code gets into the target is
`injection.run_in_process`: `sys.remote_exec` on 3.14+ (`remote_exec`, `ptrace`), gdb on
3.11-3.13 (`gdb`, `gdb_script`); a target in another root is reached through `roots`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from taskscope.attach.errors import AttachError, InjectionError
from taskscope.attach.injection import run_in_process
from taskscope.attach.payload import bootstrap_code, guarded
from taskscope.attach.roots import path_inside, seen_from_here, target_root
from taskscope.attach.staging import compile_stage, stage_agent
from taskscope.attach.target import inspect_target
from taskscope.process_facts import environment, process_exists, process_uid
from taskscope.protocol import socket_directory, socket_path


def _target_uid(pid: int) -> int:
    uid = process_uid(pid)
    return os.getuid() if uid is None else uid


def target_socket_directory(pid: int) -> str:
    """Where the target's agent will listen, as the target names it: where this client looks
    when both agree on TASKSCOPE_SOCKET_DIR, else the target user's own default. A target in
    another root (a chroot, a container) decides alone; `seen_from_here` reaches the path."""
    root = target_root(pid)
    override = os.environ.get("TASKSCOPE_SOCKET_DIR")
    if override and root is None:
        return override
    return socket_directory(environment(pid) or {}, _target_uid(pid), root)


def agent_socket(pid: int) -> str | None:
    """The socket of a live agent in `pid` where the target itself put it, seen from here; None
    if there is none (or it does not answer)."""
    path = seen_from_here(target_root(pid), socket_path(pid, target_socket_directory(pid)))
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return None
    finally:
        probe.close()
    return path


def load_agent(pid: int, timeout: float = 10.0) -> str:
    """Start the agent in process `pid` and return its socket path once it listens."""
    deadline = time.monotonic() + timeout
    info = inspect_target(pid)  # raises the clear errors (not Python, too old...)
    root = target_root(pid)
    socket_dir = target_socket_directory(pid)
    expected = socket_path(pid, socket_dir)
    # Written by the target itself, so in a directory the target owns; every path handed to
    # the target is one of its own, read from here through its root.
    status_path = os.path.join(socket_dir, f"{pid}.attach.json")
    status_here = seen_from_here(root, status_path)
    stage = stage_agent(_target_uid(pid), root)
    stage_inside = Path(stage if root is None else path_inside(root, str(stage)))
    compile_stage(stage, stage_inside, info, root)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(status_here)
    run_in_process(
        pid,
        bootstrap_code(stage_inside, socket_dir, status_path),
        timeout=max(1.0, deadline - time.monotonic()),
    )
    while time.monotonic() < deadline:
        if os.path.exists(status_here):
            with open(status_here) as handle:
                outcome = json.load(handle)
            os.unlink(status_here)
            if not outcome.get("ok"):
                raise AttachError(
                    f"the agent failed to start in process {pid}: {outcome.get('error')}"
                )
            return seen_from_here(root, str(outcome.get("socket") or expected))
        if not process_exists(pid):
            raise AttachError(f"process {pid} exited during the attach")
        time.sleep(0.01)
    raise AttachError(f"the agent did not start in process {pid} within {timeout:.0f} s")


#: What the hint runs in the target: the agent's own judgement, when that agent is loaded
#: there, told how long the client waited (WAITED, a number this client writes).
_HINT = (
    "import sys\n"
    "hint = getattr(sys.modules.get('taskscope.agent'), '_starved_hint', None)\n"
    "if hint is not None:\n"
    "    hint(WAITED)\n"
)
#: How long the threads' CPU times are watched before a hint, and what they must show: the
#: main thread running most of that time, every other thread (the agent's among them) close
#: to nothing. psutil's times move in ticks of 10 ms.
HINT_SAMPLE = 0.25
HINT_MAIN_BUSY = 0.5
HINT_OTHERS_IDLE = 0.03
#: Windows watched at most: a starved agent's thread still runs now and then.
HINT_SAMPLES = 4


def threads_ran(
    pid: int, before: dict[int, float], after: dict[int, float]
) -> tuple[float, float] | None:
    """Between two readings of the threads' CPU seconds, the share of the time between them
    (`HINT_SAMPLE`) the main thread ran (its id is the pid), and the most any other thread
    did; None when the main thread or every other one is missing."""
    if pid not in before or pid not in after:
        return None
    gained = {tid: spent - before.get(tid, 0.0) for tid, spent in after.items()}
    main = gained.pop(pid) / HINT_SAMPLE
    if not gained:
        return None
    return main, max(gained.values()) / HINT_SAMPLE


def looks_starved(ran: tuple[float, float] | None) -> bool | None:
    """What one window of `threads_ran` says: True, the main thread ran and no other did (the
    agent's thread waits for the GIL); False, give up (a thread missing, or another running
    half the time: the agent at a long look); None, watch another window."""
    if ran is None or ran[1] >= 0.5:
        return False
    if ran[0] >= HINT_MAIN_BUSY and ran[1] * HINT_SAMPLE <= HINT_OTHERS_IDLE:
        return True
    return None


def hint_starved_agent(pid: int, waited: float, timeout: float = 10.0) -> bool:
    """For an agent that has not answered for `waited` seconds: when the process's main
    thread runs and none of its other threads does (the agent's thread waits for the GIL: a
    loop busy in short steps that no heartbeat of the agent sees, as a trio run), tell the
    agent on the main thread (`agent._starved_hint`), which lowers the switch interval for
    itself. Gives up at once when another thread runs half the time (the agent at a long
    look: its answer comes), and after `HINT_SAMPLES` windows. Returns whether the agent was
    told; never raises (the hint is a help, the wait goes on without it)."""
    from taskscope.process_facts import thread_cpu_seconds

    after = thread_cpu_seconds(pid)
    for window in range(1, HINT_SAMPLES + 1):
        before = after
        time.sleep(HINT_SAMPLE)
        after = thread_cpu_seconds(pid)
        ran = None if before is None or after is None else threads_ran(pid, before, after)
        verdict = looks_starved(ran)
        if verdict is False:
            return False
        if verdict:
            waited += window * HINT_SAMPLE
            break
    else:
        return False
    try:
        code = _HINT.replace("WAITED", repr(round(float(waited), 3)))
        run_in_process(pid, guarded(code), timeout=timeout)
    except Exception:
        return False
    return True


__all__ = ["AttachError", "InjectionError", "hint_starved_agent", "load_agent", "stage_agent"]
