"""Run a small piece of Python code inside another, unmodified Python process.

`run_in_process(pid, code)` executes `code` once in the target's main interpreter, on its main
thread, with the GIL held the ordinary way, and returns once it has run.  Two mechanisms:

Python 3.14 and newer: `sys.remote_exec` (PEP 768), called by an interpreter of the target's own
major.minor on a private file.  It runs the file at the main thread's next eval-breaker check, which
an asyncio loop parked in `epoll_wait` never reaches; for that case the main thread is interrupted
for a moment (`ptrace.py`), or gdb runs `pass` on it, and the very first eval-breaker check of that
`pass` runs the file (`remote_exec.py`).

Python 3.11 to 3.13 (and 3.14+ when no matching interpreter is found): gdb, used only as a
ptrace driver, runs the code on the main thread when it is parked in a system call, or queues
it for the main thread's next eval-breaker check (`gdb.py`, `gdb_script.py`).

Code passed to `run_in_process` should not wait for the target's main thread (it is running it).
It runs with `__name__ == "__taskscope_injection__"` in a fresh namespace; whatever it raises is
swallowed, except KeyboardInterrupt, which is re-raised in the main thread as a normal Ctrl-C.
"""

from __future__ import annotations

import time

from taskscope.attach.errors import RemoteDebugDisabled
from taskscope.attach.gdb import inject_with_gdb
from taskscope.attach.remote_exec import inject_with_remote_exec, remote_debug_disabled
from taskscope.attach.target import REMOTE_EXEC_VERSION, inspect_target
from taskscope.process_facts import command_line, environment


def run_in_process(pid: int, code: str, *, timeout: float = 10.0) -> None:
    """Run `code` once on the main thread of Python process `pid`, with the GIL held, and return
    after it ran.  `code` must not raise (wrap it in try/except) nor wait for the main thread."""
    if not isinstance(code, str):
        raise TypeError(f"code must be a str of Python source, not {type(code).__name__}")
    deadline = time.monotonic() + timeout
    info = inspect_target(pid)
    if info.version >= REMOTE_EXEC_VERSION:
        environ, argv = environment(pid), command_line(pid)
        if environ is not None and argv is not None:
            reason = remote_debug_disabled(environ, argv)
            if reason is not None:
                raise RemoteDebugDisabled(
                    f"process {pid} was started with {reason}, which "
                    "forbids attaching: restart it without that"
                )
        if inject_with_remote_exec(info, code, deadline):
            return
    inject_with_gdb(info, code, deadline)
