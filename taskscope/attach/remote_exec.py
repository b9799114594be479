"""The `sys.remote_exec` route (PEP 768, Python 3.14+): an interpreter of the target's own
major.minor sends it a private file, which it runs at its main thread's next eval-breaker
check. An asyncio loop parked in `epoll_wait` never gets there by itself: the main thread is
interrupted for a moment (`ptrace.interrupt_main_thread`), and one parked in a lock is reached
through gdb, a claim file making sure the code runs once whichever route gets there first.
A target started with remote debugging turned off is told apart before anything is tried.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import time

from taskscope.attach.errors import (
    DebuggerMissing,
    InjectionError,
    InjectionTimeout,
    PtraceNotPermitted,
    RemoteDebugDisabled,
    TargetExited,
    ptrace_advice,
)
from taskscope.attach.gdb import gdb_usable, inject_with_gdb, nudge, private_dir
from taskscope.attach.interpreter import matching_interpreter, run_as_target
from taskscope.attach.payload import guarded
from taskscope.attach.ptrace import interrupt_main_thread
from taskscope.attach.roots import path_inside, target_root
from taskscope.attach.target import TargetInfo
from taskscope.process_facts import process_alive, status_field

log = logging.getLogger(__name__)


def python_options(argv: list[str]) -> list[str]:
    """The interpreter options of a Python command line (what comes before the script,
    `-c` or `-m`), one option per entry, `-X` values joined as `-Xvalue`."""
    options: list[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--" or arg == "-" or not arg.startswith("-"):
            break
        if arg.startswith("--"):
            options.append(arg)
            i += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        j = 1
        while j < len(arg):
            flag = arg[j]
            if flag in "XW":
                value = arg[j + 1 :]
                if not value and i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                options.append(f"-{flag}{value}")
                break
            if flag in "cm":
                return options
            options.append(f"-{flag}")
            j += 1
        i += 1
    return options


def remote_debug_disabled(environ: dict[str, str], argv: list[str]) -> str | None:
    """Why the target's interpreter refuses remote debugging, or None if it doesn't."""
    options = python_options(argv)
    if "-Xdisable-remote-debug" in options or any(
        o.startswith("-Xdisable-remote-debug=") for o in options
    ):
        return "-X disable-remote-debug"
    ignores_env = "-E" in options or "-I" in options
    if not ignores_env and environ.get("PYTHON_DISABLE_REMOTE_DEBUG"):
        return "PYTHON_DISABLE_REMOTE_DEBUG"
    return None


def remote_exec_failure(pid: int, returncode: int, stderr: str) -> InjectionError:
    detail = (stderr.strip().splitlines() or ["no output"])[-1]
    if returncode == 4:
        return PtraceNotPermitted(ptrace_advice(pid))
    if returncode == 5:
        return TargetExited(f"process {pid} exited before the code could be sent to it")
    if re.search(r"remote debug\w* (is )?(not enabled|disabled)", stderr, re.IGNORECASE):
        return RemoteDebugDisabled(
            f"process {pid} has remote debugging turned off ({detail}): "
            "restart it without -X disable-remote-debug"
        )
    return InjectionError(f"sys.remote_exec into process {pid} failed: {detail}")


#: How long the main thread may take to pick up sys.remote_exec's request before a main
#: thread parked in a lock or a C call is reached through gdb instead.
_REMOTE_EXEC_PATIENCE = 0.4


def inject_with_remote_exec(info: TargetInfo, code: str, deadline: float) -> bool:
    """Run `code` through sys.remote_exec; False if no matching interpreter can be found.

    sys.remote_exec runs the script on the main thread at its next eval-breaker check. A main
    thread parked in a system call is nudged; one parked for good (waiting on a lock while
    another thread runs the loop) never gets there, so after a short wait gdb, when present,
    runs the same code from another thread, and a claim file makes sure it runs only once.
    """
    root = target_root(info.pid)
    if root is not None and os.geteuid() != 0:
        raise PtraceNotPermitted(
            f"process {info.pid} runs in another root (a container or chroot): "
            "run taskscope as root to attach to it"
        )
    interpreter = matching_interpreter(info, root)
    if interpreter is None:
        return False
    # The target reads the script, and writes its markers, in its own root: every path given
    # to it is one of its own (`inside`), and we read the same files through /proc/PID/root.
    workdir = private_dir(info.pid, None if root is None else os.path.join(root, "tmp"))

    def inside(path: str) -> str:
        return path if root is None else path_inside(root, path)

    remove_workdir = False
    try:
        done = os.path.join(workdir, "done")
        done_by_gdb = os.path.join(workdir, "done-gdb")
        claim = os.path.join(workdir, "claim")
        script = os.path.join(workdir, "inject.py")
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(guarded(code, done_marker=inside(done), claim_marker=inside(claim)))
        _give_to_target_user(info.pid, workdir, script)
        try:
            result = run_as_target(
                info,
                interpreter,
                "sys.remote_exec(pid, sys.argv[2])",
                inside(script),
                timeout=max(deadline - time.monotonic(), 0.1),
            )
        except subprocess.TimeoutExpired:
            raise InjectionTimeout(
                f"sys.remote_exec into process {info.pid} did not return in time"
            ) from None
        if result.returncode in (3, 7):  # another version, or built without remote debugging
            remove_workdir = True
            return False
        if result.returncode != 0:
            remove_workdir = True
            raise remote_exec_failure(info.pid, result.returncode, result.stderr)
        sent_at = time.monotonic()
        nudge_at = sent_at + 0.2
        tried_gdb = False
        # A main thread running Python picks the script up at once; one blocked in a system
        # call (an idle loop) is interrupted for a moment; gdb only if that is not enough.
        if not os.path.exists(done) and interrupt_main_thread(info.pid):
            log.debug("process %d: main thread interrupted to pick up the script", info.pid)
        while not os.path.exists(done):
            if os.path.exists(done_by_gdb):
                # The queued script runs one day, finds the claim taken and removes its files;
                # whichever of the two comes last removes the directory.
                for path in (done_by_gdb, workdir):
                    with contextlib.suppress(OSError):
                        (os.unlink if path is done_by_gdb else os.rmdir)(path)
                return True
            if not process_alive(info.pid):
                raise TargetExited(f"process {info.pid} exited before running the code")
            now = time.monotonic()
            if now > deadline:
                if not gdb_usable():
                    raise DebuggerMissing(
                        f"process {info.pid} did not run the code in time: its main thread is "
                        "parked (an idle loop, a lock); install gdb (apt-get install gdb) so "
                        "taskscope can wake it"
                    )
                raise InjectionTimeout(
                    f"process {info.pid} did not run the code in time: its main thread has not "
                    "reached Python (a long C call, or another thread holding the GIL?)"
                )
            if not tried_gdb and now > sent_at + _REMOTE_EXEC_PATIENCE and gdb_usable():
                tried_gdb = True
                log.debug("process %d: main thread parked; reaching it with gdb", info.pid)
                wrapped = guarded(code, done_marker=inside(done_by_gdb), claim_marker=inside(claim))
                try:
                    inject_with_gdb(info, code, deadline, wrapped=wrapped)
                except (PtraceNotPermitted, InjectionTimeout):
                    raise  # says why (another tracer, a held GIL) better than a plain timeout
                except InjectionError as error:
                    log.debug("process %d: gdb could not help: %s", info.pid, error)
                continue
            if now > nudge_at:
                nudge_at = now + 1.0
                nudge(info, deadline)
            time.sleep(0.005)
        remove_workdir = True
        return True
    finally:
        # If the code hasn't run, the target will still read the file: leave it for it.
        if remove_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _give_to_target_user(pid: int, *paths: str) -> None:
    """As root, hand our private files to the target's user so it can read them (still 0700)."""
    if os.geteuid() != 0:
        return
    uid_field, gid_field = status_field(pid, "Uid"), status_field(pid, "Gid")
    if not uid_field or not gid_field:
        return
    uid, gid = int(uid_field.split()[1]), int(gid_field.split()[1])
    if uid != 0:
        for path in paths:
            os.chown(path, uid, gid)
