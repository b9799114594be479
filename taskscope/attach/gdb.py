"""The gdb route: run code on the main thread of Python 3.11 to 3.13 (and of 3.14+ when no
matching interpreter is found, or to wake a main thread `sys.remote_exec` cannot reach).

gdb runs in batch mode, used only as a ptrace driver (what it is told is `gdb_script`).  gdb
stops the process; the main thread is then in one of two states:

* Parked in a blocking system call that CPython makes with the GIL released (`epoll_wait`,
  `select`, `poll`, `clock_nanosleep`, `read`, ...), and `PyGILState_Check()` says it doesn't hold
  the GIL.  This is exactly where CPython itself runs Python signal handlers (PEP 475: on EINTR the
  C code calls `PyErr_CheckSignals` and retries), so running Python code there is as safe as a
  signal handler: the thread holds no interpreter lock and no libc lock.  We call
  `PyGILState_Ensure(); PyRun_SimpleString(code); PyGILState_Release()` on it right away.  The
  interrupted call then either restarts or returns EINTR, which CPython retries transparently.
* Anywhere else (running bytecode, waiting for the GIL or a lock, inside malloc ...).  Running
  Python there is not safe, so we only queue `Py_AddPendingCall(PyRun_SimpleString, code)` followed
  by `Py_AddPendingCall(shmdt, region)`: the interpreter runs them on the main thread at its next
  eval-breaker check, which is the designed safe point.  If the thread is waiting on a futex (a
  `threading.Lock`, `Thread.join`, ...) we make the wait return EINTR, which glibc and CPython
  treat as a spurious wakeup or, for Python locks, as "run pending calls now".  The code and its
  header live in a private System V shared memory segment that the second pending call detaches,
  which frees it; we know the code has run when the segment is gone from the target.

If gdb has started changing the target and then runs out of time (say `PyGILState_Ensure` waits
for a thread that never releases the GIL), it is not killed: killing it mid-call would leave the
thread on the trampoline.  It finishes, restores and detaches on its own; we report a timeout.

Why not simply `call strdup(...)` and `call Py_AddPendingCall(...)` from gdb: strdup is malloc,
unsafe on a thread stopped at an arbitrary instruction; the pending call alone never runs in an
idle loop; and gdb's `call` is broken on some machines (see `gdb_script`).  An interrupted
`ERESTART_RESTARTBLOCK` call (relative nanosleep, poll with timeout) is turned into EINTR rather
than a `restart_syscall`, so the next injection still recognises the call it is parked in.

Limits: `Py_AddPendingCall` takes a lock; if the main thread is stopped while it holds that lock
(only while it is itself adding or running pending calls) the injection waits for our timeout and
gdb is left to finish.  The fxsave covers SSE and x87 registers, which is all that the functions we
call on an interrupted thread use.  Python's main thread is assumed to be the process's first
thread, which it is for the `python` executable.  If the target dies between `shmget` and
`IPC_RMID` (two consecutive calls), an empty 4 KiB segment stays in the system.  One injection takes
about 0.17 s, almost all of it gdb's own start-up.

The process is stopped only from gdb's `attach` to its detach.  gdb reads the executable's symbols
before attaching (`file`, then `attach`), and none of the shared libraries': the functions are
called at addresses taskscope reads from the dynamic symbol tables of the target's mapped files
(`gdb_script.function_addresses`), which spares the freeze of reading libpython's and libc's
symbols.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import secrets
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from taskscope.attach.errors import (
    DebuggerMissing,
    InjectionError,
    InjectionTimeout,
    NotPython,
    PtraceNotPermitted,
    TargetExited,
    ptrace_advice,
)
from taskscope.attach.gdb_script import (
    MAGIC_SIZE,
    function_addresses,
    gdb_restore_script,
    gdb_scripts,
)
from taskscope.attach.payload import guarded
from taskscope.attach.roots import target_root
from taskscope.attach.stub import FINALIZING, NOT_INITIALIZED, RAN
from taskscope.attach.syscalls import syscall_name
from taskscope.attach.target import TargetInfo
from taskscope.process_facts import process_alive, process_state

log = logging.getLogger(__name__)


def _proc(pid: int, name: str) -> str:
    return f"/proc/{pid}/{name}"


@dataclass(frozen=True, slots=True)
class GdbResult:
    mode: str  # "direct" (has run), "queued" (will run), "busy" (nothing done, nudge only)
    syscall: int  # what the main thread was doing: a system call number, or -1 (running)
    region: int = 0
    magic: bytes = b""  # the first bytes of the region, while it is there
    stub: bool = False  # run by the stub, in one stop (else by calls one by one)


def _find_gdb() -> str:
    gdb = shutil.which("gdb")
    if gdb is None:
        raise DebuggerMissing(
            "gdb is not installed: install it (`apt-get install gdb`, "
            "`dnf install gdb`, ...) so taskscope can attach to Python < 3.14"
        )
    return gdb


def _check_arch(pid: int) -> None:
    if platform.machine() not in ("x86_64", "AMD64"):
        raise InjectionError(
            f"attaching with gdb is only supported on x86-64, not on "
            f"{platform.machine()}: run the target on Python 3.14+ instead"
        )
    with open(_proc(pid, "exe"), "rb") as exe:
        header = exe.read(20)
    if len(header) < 20 or struct.unpack_from("<H", header, 18)[0] != 62:  # EM_X86_64
        raise InjectionError(f"process {pid} is not a 64-bit x86 program: can't attach to it")


def gdb_failure(pid: int, output: str) -> InjectionError:
    if not process_alive(pid):
        return TargetExited(f"process {pid} exited while taskscope was attaching to it")
    if "ptrace: Operation not permitted" in output:
        return PtraceNotPermitted(ptrace_advice(pid))
    if "ptrace: No such process" in output:
        return TargetExited(f"process {pid} exited while taskscope was attaching to it")
    if re.search(r"exited (normally|with code)|terminated with signal|no longer exists", output):
        return TargetExited(f"process {pid} exited while taskscope was attached to it")
    if "TS-NOTINIT" in output:
        return NotPython(
            f"process {pid} has libpython loaded but no initialized interpreter: "
            "attach to a process running Python code"
        )
    if "TS-FINALIZING" in output:
        return TargetExited(f"process {pid} is shutting its interpreter down: nothing to attach to")
    missing = re.search(r'No symbol "(\w+)" in current context', output)
    if missing:
        return NotPython(
            f"process {pid} lacks the symbol {missing[1]}, which taskscope needs: "
            "is it a stripped or statically embedded Python?"
        )
    error = re.search(r"TS-ERROR (.*)", output)
    detail = error[1] if error else (output.strip().splitlines() or ["no output"])[-1]
    return InjectionError(
        f"gdb could not run code in process {pid} ({detail}); run with a newer gdb or report this"
    )


#: The name of an injection's private directory starts with this, then the target's pid.
WORKDIR_PREFIX = "taskscope-inject-"
#: A directory whose code ran longer ago than this has no client waiting on it any more.
STALE_WORKDIR_SECONDS = 60.0


def private_dir(pid: int, base: str | None = None) -> str:
    """A fresh 0700 directory for an injection into process `pid` (in `base`, else the
    temporary directory); never one whose path has blanks, which gdb's `restore` can't take.
    Directories that earlier injections had to leave there are removed first (see
    `sweep_stale_workdirs`)."""
    if base is None:
        base = tempfile.gettempdir()
        if any(c.isspace() for c in base):
            base = "/tmp"
    sweep_stale_workdirs(base)
    return tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{pid}-", dir=base)


def sweep_stale_workdirs(base: str) -> None:
    """Remove what injections whose client gave up (a timeout, a client killed) left in
    `base`: while the code has not run, its files wait for the target, which may still read
    them; once the target has exited, or the code ran (its `done` marker), nothing will. Only
    a directory untouched for `STALE_WORKDIR_SECONDS`: a client at work in it (reading gdb's
    output after its target exited, say) is done long before. Only directories named for a
    pid, and this user's (any, as root)."""
    now = time.time()
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    for entry in entries:
        pid_text = entry.name.removeprefix(WORKDIR_PREFIX).partition("-")[0]
        if not entry.name.startswith(WORKDIR_PREFIX) or not pid_text.isdigit():
            continue
        try:
            facts = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(facts.st_mode) or os.geteuid() not in (0, facts.st_uid):
            continue
        if now - facts.st_mtime <= STALE_WORKDIR_SECONDS:
            continue
        ran = any(os.path.exists(os.path.join(entry.path, m)) for m in ("done", "done-gdb"))
        if ran or not process_alive(int(pid_text)):
            shutil.rmtree(entry.path, ignore_errors=True)


def run_gdb(info: TargetInfo, source: str, deadline: float, *, queue: bool) -> GdbResult:
    gdb = _find_gdb()
    _check_arch(info.pid)
    workdir = private_dir(info.pid)
    try:
        return _run_gdb_in(gdb, info, source, deadline, queue, workdir)
    except _GdbStillRunning as running:
        process = running.process

        # gdb still has to read restore.gdb: the directory goes when gdb is done.
        def reap() -> None:
            process.wait()
            shutil.rmtree(workdir, ignore_errors=True)

        threading.Thread(target=reap, name="taskscope-gdb-reaper", daemon=True).start()
        raise InjectionTimeout(
            f"process {info.pid} did not finish running the code in time (its main thread "
            "may be waiting for the GIL); gdb detaches on its own once it does"
        ) from None
    finally:
        if not os.path.exists(os.path.join(workdir, "gdb.running")):
            shutil.rmtree(workdir, ignore_errors=True)


class _GdbStillRunning(Exception):
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process


#: gdb options that keep it from opening the target's shared libraries at attach (their
#: symbols, the dynamic linker's probes): for a script that names no symbol. No OS ABI
#: either: GNU/Linux's makes gdb look for the libraries at attach (several ms with the process
#: stopped) and doubles the cost of every command after it; the registers, orig_rax
#: included, come from the native target all the same.
_NO_LIBRARIES = [
    "-iex", "set osabi none",
    "-iex", "set auto-solib-add off",
    "-iex", "set sysroot /nonexistent",
    "-iex", "set exec-file-mismatch off",
]  # fmt: skip


def _run_gdb_in(
    gdb: str, info: TargetInfo, source: str, deadline: float, queue: bool, workdir: str
) -> GdbResult:
    magic = secrets.token_bytes(MAGIC_SIZE)
    payload = magic + source.encode() + b"\0"
    payload_path = os.path.join(workdir, "payload.bin")
    stub_path = os.path.join(workdir, "stub.bin")
    prelude_path = os.path.join(workdir, "prelude.gdb")
    script_path = os.path.join(workdir, "inject.gdb")
    restore_path = os.path.join(workdir, "restore.gdb")
    output_path = os.path.join(workdir, "gdb.out")
    addresses = function_addresses(info)
    scripts = gdb_scripts(
        info, payload_path, payload, queue=queue, addresses=addresses, stub_path=stub_path
    )
    files = [
        (payload_path, payload),
        (prelude_path, scripts.prelude.encode()),
        (script_path, scripts.script.encode()),
        (restore_path, gdb_restore_script().encode()),
    ]
    if scripts.stub is not None:
        files.append((stub_path, scripts.stub))
    for path, content in files:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(content)
    # The process is stopped from `attach` until gdb detaches: gdb reads the executable's
    # symbols and the prelude before (`file` first), and those of the shared libraries not at
    # all when the script calls functions by address.
    command = [
        gdb, "-nx", "-batch", "-readnever",
        "-iex", "set debuginfod enabled off",
        "-iex", "set auto-load off",
        "-iex", "set libthread-db-search-path /nonexistent",
    ]  # fmt: skip
    if addresses is not None:
        command += _NO_LIBRARIES
    else:
        root = target_root(info.pid)
        if root is not None:
            # The target's libraries are its own (a chroot's, a container's): gdb must read
            # their symbols there, or it would call our libc's addresses in the target.
            command += ["-iex", f"set sysroot {root}"]
    warm_up = _warm_up_process()
    if warm_up is not None:
        # gdb tests what ptrace can do at its first attach, forking twice (several ms, tens on
        # a loaded machine): done on a process of ours, not with the target stopped.
        command += [
            "-ex", f"attach {warm_up.pid}", "-ex", "detach", "-ex", f"echo {_WARM}\\n",
        ]  # fmt: skip
    command += [
        "-ex", f"file {_proc(info.pid, 'exe')}",
        "-x", prelude_path,
        "-ex", f"attach {info.pid}",
        "-x", script_path, "-x", restore_path,
    ]  # fmt: skip
    env = dict(os.environ, LC_ALL="C", LANG="C")
    # Output goes to a file, not a pipe: if we give up waiting, gdb must still be able to write
    # while it finishes restoring the target.
    try:
        with open(output_path, "wb") as output_file:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return _wait_gdb(process, info, deadline, workdir, output_path, magic)
    finally:
        if warm_up is not None:
            warm_up.kill()
            warm_up.wait()


#: What gdb prints once done with the warm-up process: what it said before is not about the
#: target.
_WARM = "TS-WARM"


def _warm_up_process() -> subprocess.Popen[bytes] | None:
    """A process of ours for gdb to attach to before the target (see `_run_gdb_in`)."""
    sleep = shutil.which("sleep")
    if sleep is None:
        return None
    try:
        return subprocess.Popen(
            [sleep, "60"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return None


def _wait_gdb(
    process: subprocess.Popen[bytes],
    info: TargetInfo,
    deadline: float,
    workdir: str,
    output_path: str,
    magic: bytes,
) -> GdbResult:
    try:
        process.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        output = Path(output_path).read_text(errors="replace")
        if "TS-MODIFYING" in output:
            # Killing gdb now would leave a thread on the trampoline: let it finish.
            Path(workdir, "gdb.running").touch()
            raise _GdbStillRunning(process) from None
        process.kill()
        process.wait()
        if process_state(info.pid) == "T":
            os.kill(info.pid, signal.SIGCONT)  # a stop gdb left pending when it was killed
        raise InjectionTimeout(
            f"gdb did not attach to process {info.pid} in time: "
            "is the process stopped or in uninterruptible sleep?"
        ) from None
    output = Path(output_path).read_text(errors="replace").rpartition(f"{_WARM}\n")[2]
    state = re.search(r"TS-STATE (-?\d+)", output)
    syscall = int(state[1]) if state else -1
    ran = re.search(r"TS-RAN (-?\d+)", output)
    result: int | None = int(ran[1]) if ran else None
    stub = re.search(r"TS-STUB (-?\d+)", output)
    if stub:  # what the stub did (see `stub`), in the words of the calls one by one
        outcome = int(stub[1])
        if outcome in (RAN - 1, RAN):
            result = outcome - RAN
        elif outcome == NOT_INITIALIZED:
            output += "\nTS-NOTINIT"
        elif outcome == FINALIZING:
            output += "\nTS-FINALIZING"
    if result is not None and "TS-RESTORED" in output:
        if result != 0:
            raise InjectionError(
                f"the injected code failed to start in process {info.pid}; see the target's stderr"
            )
        return GdbResult("direct", syscall, stub=stub is not None)
    queued = re.search(r"TS-QUEUED (0x[0-9a-f]+) (-?\d+)", output)
    if queued and "TS-RESTORED" in output:
        if queued[2] != "0":
            raise InjectionError(
                f"the code is queued in process {info.pid} but its memory "
                "can't be tracked (pending call queue full): try again later"
            )
        return GdbResult("queued", syscall, int(queued[1], 16), magic)
    if "TS-BUSY" in output and "TS-RESTORED" in output:
        return GdbResult("busy", syscall)
    raise gdb_failure(info.pid, output)


def wait_region_gone(pid: int, region: int, magic: bytes, deadline: float) -> None:
    """Wait until the queued pending calls have run: the last one detaches the region."""
    pause = 0.001
    try:
        mem = os.open(_proc(pid, "mem"), os.O_RDONLY)
    except FileNotFoundError:
        raise TargetExited(f"process {pid} exited before the queued code ran") from None
    except PermissionError as exc:
        raise PtraceNotPermitted(ptrace_advice(pid)) from exc
    try:
        while True:
            try:
                if os.pread(mem, len(magic), region) != magic:
                    return
            except OSError:
                if not process_alive(pid):
                    raise TargetExited(f"process {pid} exited before the queued code ran") from None
                return  # EIO: the region is unmapped
            if time.monotonic() > deadline:
                raise InjectionTimeout(
                    f"the main thread of process {pid} did not reach a point where it can run "
                    "Python code in time (busy in C code, or blocked?); the code stays queued "
                    "and runs when it does"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
    finally:
        os.close(mem)


def inject_with_gdb(
    info: TargetInfo, code: str, deadline: float, *, wrapped: str | None = None
) -> None:
    """Run `code` (or the already `wrapped` source) on a parked thread, or queue it."""
    if info.pid == os.getpid():
        raise InjectionError("taskscope can't attach to its own process: run the code directly")
    started = time.monotonic()
    result = run_gdb(info, wrapped or guarded(code), deadline, queue=True)
    log.debug(
        "process %d: %s %s(main thread in %s) after %.3f s",
        info.pid,
        result.mode,
        "by the stub " if result.stub else "",
        syscall_name(result.syscall),
        time.monotonic() - started,
    )
    if result.mode == "queued":
        wait_region_gone(info.pid, result.region, result.magic, deadline)


def gdb_usable() -> bool:
    return shutil.which("gdb") is not None and platform.machine() in ("x86_64", "AMD64")


def nudge(info: TargetInfo, deadline: float) -> None:
    """Run `pass` on a main thread parked in a system call, so that it reaches an eval-breaker
    check and picks up the code queued by sys.remote_exec."""
    if not gdb_usable():
        return
    try:
        run_gdb(info, "pass\n", deadline, queue=False)
    except InjectionTimeout:
        raise  # gdb is still at it (waiting for the GIL): it says so, and finishes on its own
    except InjectionError:
        pass  # the remote_exec request stands; the caller keeps waiting for it
