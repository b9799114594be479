"""The Python source taskscope runs inside a target: the guard around any code it injects (runs
once, never raises, leaves `__main__` alone), and the bootstrap that starts the agent from its
staged copy and reports how that went.
"""

from __future__ import annotations

import os
from pathlib import Path

from taskscope.agent.gil import DEFAULT_INTERVAL, LOWERED_INTERVAL


def guarded(code: str, done_marker: str | None = None, claim_marker: str | None = None) -> str:
    """Source that runs `code` in a fresh namespace and never raises, so neither
    PyRun_SimpleString nor a pending call ever returns an error in the target.

    With `claim_marker`, the code runs only if this copy creates that file first: two routes
    into one process (sys.remote_exec, then gdb when the main thread stays parked) run it once.
    A copy that loses removes the claim's directory, which only the two copies still use.
    """
    body = (
        "try:\n"
        f"    exec(compile({code!r}, '<taskscope-injection>', 'exec'),"
        " {'__name__': '__taskscope_injection__'})\n"
        "except KeyboardInterrupt:\n"
        "    __import__('_thread').interrupt_main()\n"
        "except BaseException:\n"
        "    pass\n"
    )
    if done_marker is not None:
        body += (
            "try:\n"
            f"    __import__('os').makedirs({os.path.dirname(done_marker)!r}, 0o700, True)\n"
            f"    open({done_marker!r}, 'x').close()\n"
            "except BaseException:\n"
            "    pass\n"
        )
    if claim_marker is None:
        inner = body
    else:
        directory = os.path.dirname(claim_marker)
        inner = (
            "try:\n"
            f"    open({claim_marker!r}, 'x').close()\n"
            "    won = True\n"
            "except BaseException:\n"
            "    won = False\n"
            "if won:\n"
            f"    exec({body!r}, {{}})\n"
            "else:\n"
            "    import os\n"
            f"    for name in ('inject.py', 'claim', ''):\n"
            "        try:\n"
            f"            (os.unlink if name else os.rmdir)(os.path.join({directory!r}, name))\n"
            "        except BaseException:\n"
            "            pass\n"
        )
    # The outer statement binds no name, so __main__'s namespace is left as it was.
    return f"try:\n    exec({inner!r}, {{}})\nexcept BaseException:\n    pass\n"


BOOTSTRAP = """
import os, sys, time
def _clocks():
    # Wall time, this thread's CPU time, and its time runnable but waiting for a CPU (Linux's
    # schedstat; 0 where it cannot be read): what is left of the wall time is time asleep.
    try:
        with open("/proc/thread-self/schedstat", "rb") as handle:
            queued = int(handle.read().split()[1]) / 1e9
    except BaseException:
        queued = 0.0
    return time.monotonic(), time.thread_time(), queued
def _bootstrap(stage, socket_dir, status_path):
    added = handed = False
    began = _clocks()
    before = set(sys.modules)
    try:
        try:
            from taskscope import agent
        except ImportError:
            # A finder cached for the stage's path by an attach that could not see it (None,
            # for a directory missing then) would hide it for good.
            sys.path_importer_cache.pop(stage, None)
            sys.path.insert(0, stage)
            added = True
            from taskscope import agent
        if hasattr(agent, "failure"):
            agent.install(socket_dir=socket_dir, report=False)
            if agent.socket_file() is None:
                raise RuntimeError(agent.failure() or "the agent could not listen")
        else:
            agent.install(socket_dir=socket_dir)
        agent._attach_modules = frozenset(
            name for name in set(sys.modules) - before if name.split(".")[0] == "taskscope"
        )
        if REPLACED_INTERVAL is not None and hasattr(agent, "_adopt_switch_interval"):
            # Time this thread slept (waiting for the GIL, mostly): starved, or not worth
            # keeping. Time it waited for a CPU is left out: a loaded machine is not a
            # starving loop (an idle program: 30-60 ms runnable under load, 0-3 ms asleep).
            ended = _clocks()
            waited = ended[0] - began[0] - (ended[1] - began[1]) - (ended[2] - began[2])
            agent._adopt_switch_interval(REPLACED_INTERVAL, waited)
            handed = True
        outcome = {"ok": True, "socket": agent.socket_file()}
    except BaseException as error:
        outcome = {"ok": False, "error": type(error).__name__ + ": " + str(error)[:300]}
        for name in set(sys.modules) - before:
            if name == "taskscope" or name.startswith("taskscope."):
                del sys.modules[name]
    finally:
        if added and stage in sys.path:
            sys.path.remove(stage)
        if added:
            sys.path_importer_cache.pop(stage, None)
        if not handed and REPLACED_INTERVAL is not None:
            if abs(sys.getswitchinterval() - LOWERED_INTERVAL) < 1e-9:
                sys.setswitchinterval(REPLACED_INTERVAL)
    import json
    os.makedirs(socket_dir, mode=0o700, exist_ok=True)
    tmp = status_path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(outcome, handle)
    os.replace(tmp, status_path)
def _quietly(*args):
    try:
        _bootstrap(*args)
    except BaseException:
        pass
import threading
threading.Thread(
    target=_quietly, args=(STAGE, SOCKET_DIR, STATUS), name="taskscope-attach", daemon=True
).start()
"""


def bootstrap_code(stage: Path, socket_dir: str, status_path: str) -> str:
    """Code run in the target: it only starts a bare thread (`_thread.start_new_thread`, which
    does not wait for the thread to run, as `threading.Thread.start` does) that compiles and
    runs the bootstrap in a fresh namespace, so nothing is added to the target's `__main__`.
    The bootstrap starts the named thread that imports and starts the agent and writes the
    status file. The thread the code runs on (the main thread, often the loop's, stopped by
    gdb meanwhile on 3.11-3.13) is held for the start of one thread and nothing more.

    Before that it lowers the switch interval from the default (`taskscope.agent.gil`): a loop
    busy in turns shorter than 5 ms would keep the new threads from the GIL after each file
    their imports read, for seconds or minutes. The agent takes the lowered interval over
    when it starts, to put back when it no longer needs it; the bootstrap puts it back itself
    when the agent does not start."""
    body = (
        BOOTSTRAP.replace("STAGE", repr(str(stage)))
        .replace("SOCKET_DIR", repr(socket_dir))
        .replace("STATUS", repr(status_path))
        .replace("LOWERED_INTERVAL", repr(LOWERED_INTERVAL))
    )
    return (
        "sys = __import__('sys')\n"
        "replaced = sys.getswitchinterval()\n"
        f"if abs(replaced - {DEFAULT_INTERVAL!r}) < 1e-9:\n"
        f"    sys.setswitchinterval({LOWERED_INTERVAL!r})\n"
        "else:\n"
        "    replaced = None\n"
        "__import__('_thread').start_new_thread(exec, ("
        f"{body!r}, {{'__name__': 'taskscope_bootstrap', 'REPLACED_INTERVAL': replaced}}))\n"
    )
