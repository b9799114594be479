"""Run a small piece of Python code inside another, unmodified Python process.

`run_in_process(pid, code)` executes `code` once in the target's main interpreter, on its main
thread, with the GIL held the ordinary way, and returns once it has run.  Two mechanisms:

Python 3.14 and newer: `sys.remote_exec` (PEP 768), called by an interpreter of the target's own
major.minor on a private file.  It runs the file at the main thread's next eval-breaker check, which
an asyncio loop parked in `epoll_wait` never reaches; for that case the gdb mechanism below runs
`pass` on the parked thread, and the very first eval-breaker check of that `pass` runs the file.

Python 3.11 to 3.13 (and 3.14+ when no matching interpreter is found): gdb in batch mode, used only
as a ptrace driver.  gdb stops the process; the main thread is then in one of two states:

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

Function calls are made by hand, not with gdb's `call`: gdb 13 can't write the x86 extended
register state on CPUs with AMX (the kernel expects a larger XSAVE buffer), so every `call` fails
there after it has already run.  We only ever write general-purpose registers and memory: the
thread is pointed at a 16-byte trampoline written over the executable's entry point (`_start`
never runs again), which does `cld; fxsave [rbx]; call rax; fxrstor [rbx]; int3`.  The fxsave
keeps the SSE/x87 state of an interrupted thread intact; the general registers, including
`orig_rax` (so an interrupted system call restarts as the kernel intended), are restored by gdb
afterwards, and the entry bytes are put back before gdb detaches.  Only x86-64 is supported.

If gdb has started changing the target and then runs out of time (say `PyGILState_Ensure` waits
for a thread that never releases the GIL), it is not killed: killing it mid-call would leave the
thread on the trampoline.  It finishes, restores and detaches on its own; we report a timeout.

Why not simply `call strdup(...)` and `call Py_AddPendingCall(...)` from gdb: strdup is malloc,
unsafe on a thread stopped at an arbitrary instruction; the pending call alone never runs in an
idle loop; and gdb's `call` is broken on the machines described above.  An interrupted
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
(`_function_addresses`), which spares the freeze of reading libpython's and libc's symbols.

Code passed to `run_in_process` should not wait for the target's main thread (it is running it).
It runs with `__name__ == "__taskscope_injection__"` in a fresh namespace; whatever it raises is
swallowed, except KeyboardInterrupt, which is re-raised in the main thread as a normal Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import secrets
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from taskscope.process_facts import (
    command_line,
    environment,
    process_alive,
    process_name,
    process_state,
    status_field,
)

__all__ = [
    "DebuggerMissing",
    "InjectionError",
    "InjectionTimeout",
    "NoSuchProcess",
    "NotPython",
    "PtraceNotPermitted",
    "RemoteDebugDisabled",
    "TargetExited",
    "TargetInfo",
    "UnsupportedPython",
    "inspect_target",
    "run_in_process",
]

log = logging.getLogger(__name__)

MIN_VERSION = (3, 11)
REMOTE_EXEC_VERSION = (3, 14)


class InjectionError(Exception):
    """Running code in the target failed; the message is one line telling the user what to do."""


class NoSuchProcess(InjectionError):
    pass


class NotPython(InjectionError):
    pass


class UnsupportedPython(InjectionError):
    pass


class DebuggerMissing(InjectionError):
    pass


class PtraceNotPermitted(InjectionError):
    pass


class RemoteDebugDisabled(InjectionError):
    pass


class TargetExited(InjectionError):
    pass


class InjectionTimeout(InjectionError):
    pass


@dataclass(frozen=True, slots=True)
class TargetInfo:
    pid: int
    version: tuple[int, int]
    executable: str
    libpython: str | None


# --------------------------------------------------------------------------------------------------
# Looking at the target without touching it


@dataclass(frozen=True, slots=True)
class _Mapping:
    start: int
    end: int
    offset: int
    path: str


_LIBPYTHON = re.compile(r"libpython(\d+)\.(\d+)[a-z]*\.so")
_PYTHON_EXE = re.compile(r"python(\d+)\.(\d+)[a-z]*$")


def _proc(pid: int, name: str) -> str:
    return f"/proc/{pid}/{name}"


def _check_pid(pid: int) -> None:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise NoSuchProcess(f"{pid!r} is not a process id: pass the pid of a Python process")
    if not os.path.exists(_proc(pid, "stat")):
        raise NoSuchProcess(f"no process with pid {pid}: check the pid (it may have exited)")


def _read_maps(pid: int) -> list[_Mapping]:
    maps = []
    for line in Path(_proc(pid, "maps")).read_text().splitlines():
        fields = line.split(None, 5)
        if len(fields) < 6 or not fields[5].startswith("/"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        maps.append(_Mapping(start, end, int(fields[2], 16), fields[5]))
    return maps


def _open_target_file(pid: int, path: str) -> str:
    """A path under which we can read a file the target has mapped, even from another mount
    namespace; the plain path if the target's root isn't accessible."""
    path = path.removesuffix(" (deleted)")
    rooted = _proc(pid, "root") + path
    try:
        os.stat(rooted)
    except OSError:
        return path
    return rooted


def target_root(pid: int) -> str | None:
    """`/proc/PID/root` when process `pid` runs in another root (a chroot, a container's mount
    namespace), a path through which we reach its files; None when its root is ours."""
    root = _proc(pid, "root")
    try:
        theirs, ours = os.stat(root), os.stat("/")
    except OSError:
        return None
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        return None
    return root


def path_inside(root: str, host_path: str) -> str:
    """The path that a process whose root is `root` uses for `host_path` (a path under root)."""
    return "/" + os.path.relpath(host_path, root).lstrip("/")


def enter_root(root: str) -> Callable[[], None]:
    """A pre-exec hook that moves the child into `root`, as py-spy runs tools in a container."""

    def enter() -> None:
        os.chroot(root)
        os.chdir("/")

    return enter


def _elf_dynamic_symbol(path: str, name: str) -> bytes | None:
    """The bytes of a data symbol exported by an ELF file (read from the file, not the process),
    or None if it isn't there."""
    try:
        with open(path, "rb") as file:
            return _read_dynamic_symbol(file.fileno(), name.encode())
    except (OSError, struct.error, IndexError):
        return None


def _read_dynamic_symbol(fd: int, name: bytes) -> bytes | None:
    header = os.pread(fd, 64, 0)
    if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:  # 64-bit little endian only
        return None
    (shoff,) = struct.unpack_from("<Q", header, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", header, 0x3A)
    table = os.pread(fd, shentsize * shnum, shoff)
    # (type, addr, offset, size, link, entsize) of each section
    sections = [struct.unpack_from("<4xI8xQQQI12xQ", table, i * shentsize) for i in range(shnum)]
    for sh_type, _addr, sh_offset, sh_size, sh_link, sh_entsize in sections:
        if sh_type != 11 or not sh_entsize:  # SHT_DYNSYM
            continue
        strtab = os.pread(fd, sections[sh_link][3], sections[sh_link][2])
        at = strtab.find(b"\0" + name + b"\0")
        if at < 0:
            return None
        symbols = os.pread(fd, sh_size, sh_offset)
        for offset in range(0, len(symbols) - sh_entsize + 1, sh_entsize):
            st_name, _info, _other, st_shndx, st_value, st_size = struct.unpack_from(
                "<IBBHQQ", symbols, offset
            )
            if st_name != at + 1 or not 0 < st_shndx < shnum:
                continue
            section_type, section_addr, section_offset = sections[st_shndx][:3]
            if section_type == 8:  # SHT_NOBITS: no bytes in the file
                return None
            return os.pread(fd, st_size, section_offset + st_value - section_addr)
    return None


def _version_from_name(path: str) -> tuple[int, int] | None:
    base = os.path.basename(path.removesuffix(" (deleted)"))
    match = _LIBPYTHON.search(base) or _PYTHON_EXE.search(base)
    return (int(match[1]), int(match[2])) if match else None


def inspect_target(pid: int) -> TargetInfo:
    """Identify the Python running in `pid`: version, executable and libpython, read from the
    process itself (its mappings and the `Py_Version` constant of the mapped interpreter)."""
    _check_pid(pid)
    if process_state(pid) in ("Z", "X"):
        raise TargetExited(f"process {pid} has exited (zombie): nothing left to inspect")
    try:
        executable = os.readlink(_proc(pid, "exe"))
        maps = _read_maps(pid)
    except FileNotFoundError as exc:
        if not os.path.exists(_proc(pid, "stat")):
            raise NoSuchProcess(f"no process with pid {pid}: it has exited") from exc
        raise NotPython(
            f"process {pid} ({process_name(pid)}) has no executable (kernel thread?): "
            "pass the pid of a Python process"
        ) from exc
    except PermissionError as exc:
        # Its memory map is closed to us even though we are root or its owner; what anyone
        # may read still tells a program that is plainly not Python (pid 1 of a container)
        # from one we may not trace. Someone else's process gets the ownership reason, which
        # is true and says what to do (a renamed Python, gunicorn's workers, would be
        # misnamed here).
        command = [arg for arg in command_line(pid) or [] if arg]
        uid_field = status_field(pid, "Uid")
        ours = os.geteuid() == 0 or (
            uid_field is not None and int(uid_field.split()[1]) == os.geteuid()
        )
        if ours and not _looks_like_python(pid, command):
            shown = " ".join(command)[:80] or process_name(pid)
            raise NotPython(
                f"process {pid} ({process_name(pid)}: {shown}) is not a Python process, by its "
                "command line: pass the pid of a running Python 3.11+ program"
            ) from exc
        raise PtraceNotPermitted(_ptrace_advice(pid)) from exc
    libpython = next((m.path for m in maps if _LIBPYTHON.search(os.path.basename(m.path))), None)
    interpreter = _open_target_file(pid, libpython) if libpython is not None else _proc(pid, "exe")
    raw = _elf_dynamic_symbol(interpreter, "Py_Version")
    if raw is not None and len(raw) >= 4:
        hexversion = int.from_bytes(raw[:4], "little")
        version = ((hexversion >> 24) & 0xFF, (hexversion >> 16) & 0xFF)
    else:
        # Py_Version exists since 3.11: an older Python is recognised by its file names.
        named = _version_from_name(libpython or "") or _version_from_name(executable)
        if named is None:
            raise NotPython(
                f"process {pid} ({process_name(pid)}, {executable}) is not a "
                "Python process: pass the pid of a running Python 3.11+ program"
            )
        if named >= MIN_VERSION:
            raise NotPython(
                f"process {pid} ({executable}) looks like Python but exports no "
                "Python C-API symbols (stripped or statically embedded?)"
            )
        version = named
    if version < MIN_VERSION:
        raise UnsupportedPython(
            f"process {pid} runs Python {version[0]}.{version[1]}; "
            "taskscope needs Python 3.11 or newer in the target"
        )
    return TargetInfo(pid=pid, version=version, executable=executable, libpython=libpython)


_PYTHON_NAME = re.compile(r"python|^py(thon)?\d", re.IGNORECASE)


def _looks_like_python(pid: int, command: list[str]) -> bool:
    """Whether what anyone may read of a process (its name, the program its command line
    starts with, which for a `#!` script is the interpreter) could be Python. When in doubt,
    yes: the caller then gives the ptrace reason."""
    if not command:
        return True  # a kernel thread has no cmdline, but no exe either: not this path
    # An interpreter embedded in another program (uwsgi...) is not told by its name: that
    # rare case gets a wrong "not Python" only when its memory is also closed to us.
    names = [process_name(pid), os.path.basename(command[0])]
    return any(_PYTHON_NAME.search(name) for name in names)


def _ptrace_advice(pid: int) -> str:
    """One line explaining why we may not trace `pid`, and what to do about it."""
    tracer = status_field(pid, "TracerPid")
    if tracer and tracer != "0":
        return (
            f"process {pid} is already being traced by pid {tracer} "
            f"({process_name(int(tracer))}): detach that debugger first"
        )
    uid_field = status_field(pid, "Uid")
    target_uid = int(uid_field.split()[1]) if uid_field else None
    euid = os.geteuid()
    if euid != 0 and target_uid is not None and target_uid != euid:
        return (
            f"process {pid} belongs to uid {target_uid}, not to you (uid {euid}): "
            "run taskscope as that user or as root"
        )
    cap_eff = status_field(os.getpid(), "CapEff")
    if euid == 0 and cap_eff is not None and not int(cap_eff, 16) & (1 << 19):
        return (
            "root here lacks CAP_SYS_PTRACE (a container?): start the container with "
            "--cap-add=SYS_PTRACE, or run taskscope inside the target's container"
        )
    try:
        scope = Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip()
    except OSError:
        scope = None
    if scope == "1":
        return (
            f"ptrace of process {pid} is restricted to its parent "
            "(kernel.yama.ptrace_scope=1): run taskscope with sudo, or "
            "`sudo sysctl kernel.yama.ptrace_scope=0`"
        )
    if scope == "2":
        return "ptrace is restricted to root (kernel.yama.ptrace_scope=2): run taskscope with sudo"
    if scope == "3":
        return (
            "ptrace is disabled on this machine until reboot (kernel.yama.ptrace_scope=3): "
            "it can't be attached to"
        )
    if euid == 0:
        return (
            f"not permitted to trace process {pid}, even as root (a security module, seccomp, "
            "no_new_privs or a process with privileges this one lacks may forbid it)"
        )
    return (
        f"not permitted to trace process {pid} (a security module, seccomp or no_new_privs "
        "may forbid it): run taskscope as root or as the target's user"
    )


# --------------------------------------------------------------------------------------------------
# The code that runs in the target


def _wrap(code: str, done_marker: str | None = None, claim_marker: str | None = None) -> str:
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


# --------------------------------------------------------------------------------------------------
# gdb


# x86-64 system calls in which CPython blocks with the GIL released and retries on EINTR, and which
# libc never issues while holding one of its own locks.  futex is deliberately absent: a thread
# waiting for the GIL or for malloc's lock is also in futex.
_SAFE_SYSCALLS = {
    "read": 0, "write": 1, "poll": 7, "pread64": 17, "pwrite64": 18, "readv": 19, "writev": 20,
    "select": 23, "pause": 34, "nanosleep": 35, "connect": 42, "accept": 43, "sendto": 44,
    "recvfrom": 45, "sendmsg": 46, "recvmsg": 47, "wait4": 61, "flock": 73,
    "rt_sigtimedwait": 128, "rt_sigsuspend": 130, "clock_nanosleep": 230, "epoll_wait": 232,
    "waitid": 247, "pselect6": 270, "ppoll": 271, "epoll_pwait": 281, "accept4": 288,
    "recvmmsg": 299, "sendmmsg": 307, "epoll_pwait2": 441,
}  # fmt: skip
_SYS_FUTEX = 202
_ERESTARTSYS, _ERESTARTNOINTR, _ERESTARTNOHAND, _ERESTART_RESTARTBLOCK = -512, -513, -514, -516
_EINTR = -4

# cld; fxsave64 [rbx]; call rax; fxrstor64 [rbx]; int3  (+ padding)
_TRAMPOLINE = bytes.fromhex("fc 48 0f ae 03 ff d0 48 0f ae 0b cc cc cc cc cc")
_TRAMPOLINE_RETURN = 12  # rip after the int3

_MAGIC_SIZE = 16
_GDB_REGISTERS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _GdbResult:
    mode: str  # "direct" (has run), "queued" (will run), "busy" (nothing done, nudge only)
    syscall: int  # what the main thread was doing: a system call number, or -1 (running)
    region: int = 0
    magic: bytes = b""  # the first bytes of the region, while it is there


#: The functions the gdb script calls, by the name the script gives them.
_GDB_FUNCTIONS = (
    "Py_IsInitialized", "PyGILState_Check", "PyGILState_Ensure", "PyGILState_Release",
    "PyRun_SimpleString", "Py_AddPendingCall", "mmap", "munmap", "__errno_location",
    "shmget", "shmat", "shmctl", "shmdt",
)  # fmt: skip
_STT_FUNC = 2


def _elf_functions(path: str, names: set[bytes]) -> tuple[int, dict[bytes, int]] | None:
    """The virtual address of the first loaded segment of an ELF file and the addresses of the
    exported functions among `names` it defines (plain functions only: an IFUNC's address is
    its resolver's), read from the file; None if it is not a 64-bit little-endian ELF."""
    try:
        with open(path, "rb") as file:
            fd = file.fileno()
            header = os.pread(fd, 64, 0)
            if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return None
            (phoff, shoff) = struct.unpack_from("<QQ", header, 0x20)
            phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", header, 0x36)
            base = None
            programs = os.pread(fd, phentsize * phnum, phoff)
            for index in range(phnum):
                p_type, _flags, p_offset, p_vaddr = struct.unpack_from(
                    "<IIQQ", programs, index * phentsize
                )
                if p_type == 1 and p_offset == 0:  # PT_LOAD of the file's first page
                    base = p_vaddr
                    break
            if base is None:
                return None
            table = os.pread(fd, shentsize * shnum, shoff)
            sections = [
                struct.unpack_from("<4xI8xQQQI12xQ", table, i * shentsize) for i in range(shnum)
            ]
            found: dict[bytes, int] = {}
            for sh_type, _addr, sh_offset, sh_size, sh_link, sh_entsize in sections:
                if sh_type != 11 or not sh_entsize:  # SHT_DYNSYM
                    continue
                strtab = os.pread(fd, sections[sh_link][3], sections[sh_link][2])
                symbols = os.pread(fd, sh_size, sh_offset)
                for offset in range(0, len(symbols) - sh_entsize + 1, sh_entsize):
                    st_name, st_info, _other, st_shndx, st_value = struct.unpack_from(
                        "<IBBHQ", symbols, offset
                    )
                    if st_info & 0xF != _STT_FUNC or not st_shndx or not st_value:
                        continue
                    end = strtab.find(b"\0", st_name)
                    name = strtab[st_name:end]
                    if name in names and name not in found:
                        found[name] = st_value
            return base, found
    except (OSError, struct.error, IndexError):
        return None


def _function_addresses(info: TargetInfo) -> dict[str, int] | None:
    """Where the functions the gdb script calls are in the target, from the dynamic symbol
    tables of its mapped files (the executable, libpython, libc): gdb then needs no symbols
    and reads none while the process is stopped. None when one can't be found this way."""
    finalizing = "Py_IsFinalizing" if info.version >= (3, 13) else "_Py_IsFinalizing"
    wanted = {name.encode() for name in (*_GDB_FUNCTIONS, finalizing)}
    try:
        maps = _read_maps(info.pid)
    except OSError:
        return None
    starts: dict[str, int] = {}
    for mapping in maps:
        if mapping.offset == 0 and mapping.path not in starts:
            starts[mapping.path] = mapping.start
    addresses: dict[bytes, int] = {}
    for path, start in starts.items():
        if path.endswith(" (deleted)") or not wanted - addresses.keys():
            continue
        name = os.path.basename(path)
        if not (path == info.executable or _LIBPYTHON.search(name) or name.startswith("libc.")):
            continue
        read = _elf_functions(_open_target_file(info.pid, path), wanted - addresses.keys())
        if read is None:
            continue
        base, found = read
        for symbol, value in found.items():
            addresses[symbol] = start - base + value
    if wanted - addresses.keys():
        return None
    named = {symbol.decode(): address for symbol, address in addresses.items()}
    named["finalizing"] = named.pop(finalizing)
    return named


def _entry_point(pid: int) -> int:
    auxv = Path(_proc(pid, "auxv")).read_bytes()
    for offset in range(0, len(auxv) - 15, 16):
        key, value = struct.unpack_from("<QQ", auxv, offset)
        if key == 9:  # AT_ENTRY
            return int(value)
    raise InjectionError(f"process {pid} has no entry point in its auxv: can't inject into it")


def _gdb_script(
    info: TargetInfo,
    payload_path: str,
    payload_size: int,
    *,
    queue: bool,
    addresses: dict[str, int] | None = None,
) -> str:
    """The gdb command file: save registers, install the trampoline, decide, run or queue.
    With `addresses` (see `_function_addresses`) it names no symbol."""
    entry = _entry_point(info.pid)
    tramp_lo, tramp_hi = struct.unpack("<QQ", _TRAMPOLINE)
    finalizing = "Py_IsFinalizing" if info.version >= (3, 13) else "_Py_IsFinalizing"
    safe = " || ".join(f"$ts_s_orig_rax == {n}" for n in sorted(_SAFE_SYSCALLS.values()))
    map_size = (payload_size + 4095) & ~4095
    lines = [
        "set confirm off",
        "set pagination off",
        "set width 0",
        "set height 0",
        "handle all nostop noprint pass",
        "handle SIGINT nostop noprint pass",
        "set $ts_pc = $pc",  # fails (and ends the script) when nothing is attached
        'printf "TS-ATTACHED\\n"',
        "set $ts_saved = 0",
        "set $ts_tramp = 0",
        "set $ts_mode = 0",
    ]
    functions = {
        "isinit": "Py_IsInitialized",
        "finalizing": finalizing,
        "gilcheck": "PyGILState_Check",
        "ensure": "PyGILState_Ensure",
        "release": "PyGILState_Release",
        "run": "PyRun_SimpleString",
        "pending": "Py_AddPendingCall",
        "mmap": "mmap",
        "munmap": "munmap",
        "errno": "__errno_location",
        "shmget": "shmget",
        "shmat": "shmat",
        "shmctl": "shmctl",
        "shmdt": "shmdt",
    }
    for variable, symbol in functions.items():
        if addresses is not None:
            known = addresses["finalizing" if variable == "finalizing" else symbol]
            lines.append(f"set $ts_f_{variable} = {known:#x}")
        else:
            lines.append(f"set $ts_f_{variable} = (long)&{symbol}")
    lines += [
        'printf "TS-SYMBOLS\\n"',
        f"set $ts_entry = {entry:#x}",
        "define ts_call",
        "  if $ts_ok",
        "    set $rax = $arg0",
        "    set $rdi = $arg1",
        "    set $rsi = $arg2",
        "    set $rdx = $arg3",
        "    set $rcx = $arg4",
        "    set $r8 = $arg5",
        "    set $r9 = $arg6",
        "    set $rbx = $ts_fx",
        "    set $rsp = $ts_sp",
        "    set $rip = $ts_entry",
        "    set $orig_rax = -1",
        "    continue",
        "    set $ts_ret = (long)$rax",
        f"    if (long)$rip != $ts_entry + {_TRAMPOLINE_RETURN}",
        "      set $ts_ok = 0",
        '      printf "TS-ERROR unexpected stop at %#lx\\n", (long)$rip',
        "    end",
        "  else",
        "    set $ts_ret = -1",
        "  end",
        "end",
    ]
    lines += [f"set $ts_s_{reg} = (long)${reg}" for reg in _GDB_REGISTERS]
    lines += [
        "set $ts_s_rip = (long)$rip",
        "set $ts_s_eflags = $eflags",
        "set $ts_s_orig_rax = (long)$orig_rax",
        "set $ts_saved = 1",
        'printf "TS-STATE %ld %ld\\n", $ts_s_orig_rax, $ts_s_rax',
        # Below the red zone, 64-byte aligned fxsave area, then the stack for our calls.
        "set $ts_fx = ($ts_s_rsp - 1280) & ~63",
        "set $ts_sp = $ts_fx - 64",
        "set $ts_o0 = *(long*)$ts_entry",
        "set $ts_o1 = *(long*)($ts_entry + 8)",
        'printf "TS-MODIFYING\\n"',
        "set $ts_tramp = 1",
        f"set var *(long*)$ts_entry = {tramp_lo:#x}",
        f"set var *(long*)($ts_entry + 8) = {tramp_hi:#x}",
        "set $ts_ok = 1",
        "set $ts_mode = 0",
        "ts_call $ts_f_isinit 0 0 0 0 0 0",
        "if $ts_ok && (int)$ts_ret == 0",
        '  printf "TS-NOTINIT\\n"',
        "  set $ts_ok = 0",
        "end",
        "ts_call $ts_f_finalizing 0 0 0 0 0 0",
        "if $ts_ok && (int)$ts_ret != 0",
        '  printf "TS-FINALIZING\\n"',
        "  set $ts_ok = 0",
        "end",
        f"if $ts_ok && ({safe})",
        "  ts_call $ts_f_gilcheck 0 0 0 0 0 0",
        "  if $ts_ok && (int)$ts_ret == 0",
        "    set $ts_mode = 1",
        "  end",
        "end",
    ]
    if queue:
        lines += ["if $ts_ok && $ts_mode == 0", "  set $ts_mode = 2", "end"]
    lines += [
        # Run it now, on this parked thread.
        "if $ts_mode == 1",
        f"  ts_call $ts_f_mmap 0 {map_size} 3 0x22 -1 0",
        "  set $ts_region = $ts_ret",
        "  if $ts_ok && ($ts_region == -1 || $ts_region == 0)",
        '    printf "TS-ERROR mmap failed\\n"',
        "    set $ts_ok = 0",
        "  end",
        "  if $ts_ok",
        f"    restore {payload_path} binary $ts_region",
        "    ts_call $ts_f_errno 0 0 0 0 0 0",
        "    set $ts_errno_ptr = $ts_ret",
        "    set $ts_errno = *(int*)$ts_errno_ptr",
        "    ts_call $ts_f_ensure 0 0 0 0 0 0",
        "    set $ts_gstate = $ts_ret",
        f"    ts_call $ts_f_run $ts_region+{_MAGIC_SIZE} 0 0 0 0 0",
        '    printf "TS-RAN %d\\n", (int)$ts_ret',
        "    ts_call $ts_f_release $ts_gstate 0 0 0 0 0",
        "    set var *(int*)$ts_errno_ptr = $ts_errno",
        f"    ts_call $ts_f_munmap $ts_region {map_size} 0 0 0 0",
        "  end",
        "end",
        # Queue it for the main thread's next eval-breaker check.
        "if $ts_mode == 2",
        f"  ts_call $ts_f_shmget 0 {map_size} 0x380 0 0 0",
        "  set $ts_shmid = (int)$ts_ret",
        "  if $ts_ok && $ts_shmid < 0",
        '    printf "TS-ERROR shmget failed\\n"',
        "    set $ts_ok = 0",
        "  end",
        "  ts_call $ts_f_shmat $ts_shmid 0 0 0 0 0",
        "  set $ts_region = $ts_ret",
        "  ts_call $ts_f_shmctl $ts_shmid 0 0 0 0 0",  # IPC_RMID: gone once detached
        "  if $ts_ok && $ts_region == -1",
        '    printf "TS-ERROR shmat failed\\n"',
        "    set $ts_ok = 0",
        "  end",
        "  if $ts_ok",
        f"    restore {payload_path} binary $ts_region",
        f"    ts_call $ts_f_pending $ts_f_run $ts_region+{_MAGIC_SIZE} 0 0 0 0",
        "    if $ts_ok && (int)$ts_ret != 0",
        '      printf "TS-ERROR pending call queue full\\n"',
        "      ts_call $ts_f_shmdt $ts_region 0 0 0 0 0",
        "      set $ts_ok = 0",
        "    end",
        "    ts_call $ts_f_pending $ts_f_shmdt $ts_region 0 0 0 0",
        "    if $ts_ok",
        '      printf "TS-QUEUED %#lx %d\\n", $ts_region, (int)$ts_ret',
        "    end",
        "  end",
        "end",
        "if $ts_mode == 0 && $ts_ok",
        '  printf "TS-BUSY\\n"',
        "end",
    ]
    return "\n".join(lines) + "\n"


def _gdb_restore_script() -> str:
    """Run after the main script even if it stopped on an error: put everything back."""
    lines = [
        "if $ts_tramp",
        "  set var *(long*)$ts_entry = $ts_o0",
        "  set var *(long*)($ts_entry + 8) = $ts_o1",
        "end",
        "if $ts_saved",
        "  set $rip = $ts_s_rip",
    ]
    lines += [f"  set ${reg} = $ts_s_{reg}" for reg in _GDB_REGISTERS]
    lines += [
        "  set $eflags = $ts_s_eflags",
        "  set $orig_rax = $ts_s_orig_rax",
        # A restart through restart_syscall would hide the system call from the next injection
        # (and from the whitelist); EINTR is retried by CPython with the remaining timeout.
        f"  if $ts_s_rax == {_ERESTART_RESTARTBLOCK}",
        f"    set $rax = {_EINTR}",
        "  end",
        # A futex wait that returns EINTR makes a Python lock acquire run pending calls.
        f"  if $ts_mode == 2 && $ts_s_orig_rax == {_SYS_FUTEX}"
        f" && ($ts_s_rax == {_ERESTARTSYS} || $ts_s_rax == {_ERESTARTNOHAND}"
        f" || $ts_s_rax == {_ERESTARTNOINTR})",
        f"    set $rax = {_EINTR}",
        "  end",
        '  printf "TS-RESTORED\\n"',
        "end",
    ]
    return "\n".join(lines) + "\n"


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


def _gdb_failure(pid: int, output: str) -> InjectionError:
    if not process_alive(pid):
        return TargetExited(f"process {pid} exited while taskscope was attaching to it")
    if "ptrace: Operation not permitted" in output:
        return PtraceNotPermitted(_ptrace_advice(pid))
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


def _private_dir(base: str | None = None) -> str:
    """A fresh 0700 directory (in `base`, else the temporary directory); never one whose path
    has blanks, which gdb's `restore` can't take."""
    if base is None and any(c.isspace() for c in tempfile.gettempdir()):
        base = "/tmp"
    return tempfile.mkdtemp(prefix="taskscope-inject-", dir=base)


def _run_gdb(info: TargetInfo, source: str, deadline: float, *, queue: bool) -> _GdbResult:
    gdb = _find_gdb()
    _check_arch(info.pid)
    workdir = _private_dir()
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
#: symbols, the dynamic linker's probes): for a script that names no symbol.
_NO_LIBRARIES = [
    "-iex", "set auto-solib-add off",
    "-iex", "set sysroot /nonexistent",
    "-iex", "set exec-file-mismatch off",
]  # fmt: skip


def _run_gdb_in(
    gdb: str, info: TargetInfo, source: str, deadline: float, queue: bool, workdir: str
) -> _GdbResult:
    magic = secrets.token_bytes(_MAGIC_SIZE)
    payload = magic + source.encode() + b"\0"
    payload_path = os.path.join(workdir, "payload.bin")
    script_path = os.path.join(workdir, "inject.gdb")
    restore_path = os.path.join(workdir, "restore.gdb")
    output_path = os.path.join(workdir, "gdb.out")
    addresses = _function_addresses(info)
    script = _gdb_script(info, payload_path, len(payload), queue=queue, addresses=addresses)
    for path, content in (
        (payload_path, payload),
        (script_path, script.encode()),
        (restore_path, _gdb_restore_script().encode()),
    ):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(content)
    # The process is stopped from `attach` until gdb detaches: gdb reads the executable's
    # symbols before (`file` first), and those of the shared libraries not at all when the
    # script calls functions by address.
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
    command += [
        "-ex", f"file {_proc(info.pid, 'exe')}",
        "-ex", f"attach {info.pid}",
        "-x", script_path, "-x", restore_path,
    ]  # fmt: skip
    env = dict(os.environ, LC_ALL="C", LANG="C")
    # Output goes to a file, not a pipe: if we give up waiting, gdb must still be able to write
    # while it finishes restoring the target.
    with open(output_path, "wb") as output_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
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
    output = Path(output_path).read_text(errors="replace")
    state = re.search(r"TS-STATE (-?\d+)", output)
    syscall = int(state[1]) if state else -1
    ran = re.search(r"TS-RAN (-?\d+)", output)
    if ran and "TS-RESTORED" in output:
        if ran[1] != "0":
            raise InjectionError(
                f"the injected code failed to start in process {info.pid}; see the target's stderr"
            )
        return _GdbResult("direct", syscall)
    queued = re.search(r"TS-QUEUED (0x[0-9a-f]+) (-?\d+)", output)
    if queued and "TS-RESTORED" in output:
        if queued[2] != "0":
            raise InjectionError(
                f"the code is queued in process {info.pid} but its memory "
                "can't be tracked (pending call queue full): try again later"
            )
        return _GdbResult("queued", syscall, int(queued[1], 16), magic)
    if "TS-BUSY" in output and "TS-RESTORED" in output:
        return _GdbResult("busy", syscall)
    raise _gdb_failure(info.pid, output)


def _wait_region_gone(pid: int, region: int, magic: bytes, deadline: float) -> None:
    """Wait until the queued pending calls have run: the last one detaches the region."""
    pause = 0.001
    try:
        mem = os.open(_proc(pid, "mem"), os.O_RDONLY)
    except FileNotFoundError:
        raise TargetExited(f"process {pid} exited before the queued code ran") from None
    except PermissionError as exc:
        raise PtraceNotPermitted(_ptrace_advice(pid)) from exc
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


def _syscall_name(number: int) -> str:
    if number < 0:
        return "user space"
    names = {n: name for name, n in _SAFE_SYSCALLS.items()} | {_SYS_FUTEX: "futex"}
    return names.get(number, f"system call {number}")


def _inject_with_gdb(
    info: TargetInfo, code: str, deadline: float, *, wrapped: str | None = None
) -> None:
    """Run `code` (or the already `wrapped` source) on a parked thread, or queue it."""
    if info.pid == os.getpid():
        raise InjectionError("taskscope can't attach to its own process: run the code directly")
    started = time.monotonic()
    result = _run_gdb(info, wrapped or _wrap(code), deadline, queue=True)
    log.debug(
        "process %d: %s (main thread in %s) after %.3f s",
        info.pid,
        result.mode,
        _syscall_name(result.syscall),
        time.monotonic() - started,
    )
    if result.mode == "queued":
        _wait_region_gone(info.pid, result.region, result.magic, deadline)


# --------------------------------------------------------------------------------------------------
# Python 3.14+: sys.remote_exec


def _python_options(argv: list[str]) -> list[str]:
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


def _remote_debug_disabled(environ: dict[str, str], argv: list[str]) -> str | None:
    """Why the target's interpreter refuses remote debugging, or None if it doesn't."""
    options = _python_options(argv)
    if "-Xdisable-remote-debug" in options or any(
        o.startswith("-Xdisable-remote-debug=") for o in options
    ):
        return "-X disable-remote-debug"
    ignores_env = "-E" in options or "-I" in options
    if not ignores_env and environ.get("PYTHON_DISABLE_REMOTE_DEBUG"):
        return "PYTHON_DISABLE_REMOTE_DEBUG"
    return None


def matching_interpreter(info: TargetInfo, root: str | None = None) -> str | None:
    """An interpreter of the target's major.minor that we can run; with `root`, one inside the
    target's root, as a path there (it will run there: its libc may not be ours)."""
    name = f"python{info.version[0]}.{info.version[1]}"
    candidates = []
    executable, libpython = info.executable, info.libpython
    if root is not None:
        real_root = os.path.realpath(root)
        executable = _strip_root(real_root, executable)
        libpython = _strip_root(real_root, libpython) if libpython else None
    if re.fullmatch(r"python[\d.]*[a-z]*", os.path.basename(executable)):
        candidates.append(executable)
    if libpython:
        prefix = os.path.dirname(os.path.dirname(libpython))
        candidates.append(os.path.join(prefix, "bin", name))
    if root is None:
        found = shutil.which(name)
    else:
        found = next(
            (
                os.path.join(folder, name)
                for folder in ("/usr/local/bin", "/usr/bin", "/bin")
                if os.path.exists(root + os.path.join(folder, name))
            ),
            None,
        )
    if found:
        candidates.append(found)
    for candidate in candidates:
        seen_from_here = candidate if root is None else root + candidate
        version = _version_from_name(os.path.realpath(seen_from_here))
        if root is not None and version is None:
            version = _version_from_name(candidate)
        if os.access(seen_from_here, os.X_OK) and version in (None, info.version):
            return candidate
    return None


def _strip_root(real_root: str, path: str) -> str:
    """A path the kernel showed us from our root, as the target names it in its own."""
    if real_root != "/" and (path == real_root or path.startswith(real_root + "/")):
        return "/" + path[len(real_root) :].lstrip("/")
    return path


#: A script run under the target's own interpreter: `{body}` (indented) runs with the target's
#: pid in `pid` and the other arguments in `sys.argv[2:]`; what it raises becomes an exit
#: status the caller reads: 3 another version, 4 not permitted, 5 no such process, 6 other,
#: 7 the feature is missing (no sys.remote_exec, no _remote_debugging).
_AS_TARGET = """\
import sys
if sys.version_info[:2] != ({major}, {minor}):
    sys.exit(3)
pid = int(sys.argv[1])
try:
{body}
except PermissionError as exc:
    print("EPERM", exc, file=sys.stderr)
    sys.exit(4)
except ProcessLookupError as exc:
    print("ESRCH", exc, file=sys.stderr)
    sys.exit(5)
except (AttributeError, ImportError) as exc:
    print("ENOSYS", exc, file=sys.stderr)
    sys.exit(7)
except Exception as exc:
    print(type(exc).__name__, exc, file=sys.stderr)
    sys.exit(6)
"""


def run_as_target(
    info: TargetInfo,
    interpreter: str,
    body: str,
    *arguments: str,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """Run `body` (Python source, see `_AS_TARGET`) under `interpreter`, an interpreter of the
    target's own version, inside the target's root when that is not ours."""
    root = target_root(info.pid)
    if root is not None and not os.path.exists(os.path.join(root, "proc", "self")):
        # sys.remote_exec and _remote_debugging find the target through /proc.
        raise InjectionError(
            f"process {info.pid} runs in a root with no /proc mounted, where its own Python "
            f"cannot look at it: mount it (mount -t proc proc {os.path.realpath(root)}/proc)"
        )
    indented = "".join(f"    {line}\n" for line in body.splitlines())
    script = _AS_TARGET.format(major=info.version[0], minor=info.version[1], body=indented)
    return subprocess.run(
        [interpreter, "-I", "-S", "-c", script, str(info.pid), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=None if root is None else enter_root(root),
    )


def _remote_exec_failure(pid: int, returncode: int, stderr: str) -> InjectionError:
    detail = (stderr.strip().splitlines() or ["no output"])[-1]
    if returncode == 4:
        return PtraceNotPermitted(_ptrace_advice(pid))
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


def _inject_with_remote_exec(info: TargetInfo, code: str, deadline: float) -> bool:
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
    workdir = _private_dir(None if root is None else os.path.join(root, "tmp"))

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
            file.write(_wrap(code, done_marker=inside(done), claim_marker=inside(claim)))
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
            raise _remote_exec_failure(info.pid, result.returncode, result.stderr)
        sent_at = time.monotonic()
        nudge_at = sent_at + 0.2
        tried_gdb = False
        # A main thread running Python picks the script up at once; one blocked in a system
        # call (an idle loop) is interrupted for a moment; gdb only if that is not enough.
        if not os.path.exists(done) and _interrupt_main_thread(info.pid):
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
                if not _gdb_usable():
                    raise DebuggerMissing(
                        f"process {info.pid} did not run the code in time: its main thread is "
                        "parked (an idle loop, a lock); install gdb (apt-get install gdb) so "
                        "taskscope can wake it"
                    )
                raise InjectionTimeout(
                    f"process {info.pid} did not run the code in time: its main thread has not "
                    "reached Python (a long C call, or another thread holding the GIL?)"
                )
            if not tried_gdb and now > sent_at + _REMOTE_EXEC_PATIENCE and _gdb_usable():
                tried_gdb = True
                log.debug("process %d: main thread parked; reaching it with gdb", info.pid)
                wrapped = _wrap(code, done_marker=inside(done_by_gdb), claim_marker=inside(claim))
                try:
                    _inject_with_gdb(info, code, deadline, wrapped=wrapped)
                except (PtraceNotPermitted, InjectionTimeout):
                    raise  # says why (another tracer, a held GIL) better than a plain timeout
                except InjectionError as error:
                    log.debug("process %d: gdb could not help: %s", info.pid, error)
                continue
            if now > nudge_at:
                nudge_at = now + 1.0
                _nudge(info, deadline)
            time.sleep(0.005)
        remove_workdir = True
        return True
    finally:
        # If the code hasn't run, the target will still read the file: leave it for it.
        if remove_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _gdb_usable() -> bool:
    return shutil.which("gdb") is not None and platform.machine() in ("x86_64", "AMD64")


_PTRACE_DETACH, _PTRACE_SEIZE, _PTRACE_INTERRUPT = 0x11, 0x4206, 0x4207
_PTRACE_EVENT_STOP = 128
_WALL = 0x40000000


def _main_thread_syscall(pid: int) -> int | None:
    """The system call the main thread is blocked in, or None (running, or unreadable)."""
    try:
        with open(_proc(pid, f"task/{pid}/syscall")) as file:
            first = file.read().split(maxsplit=1)[0]
    except (OSError, IndexError):
        return None
    return int(first) if first.lstrip("-").isdigit() and int(first) >= 0 else None


#: x86-64 `struct user_regs_struct`: 27 registers; where rax and orig_rax are.
_USER_REGS, _RAX, _ORIG_RAX = 27, 10, 15
_PTRACE_GETREGS, _PTRACE_SETREGS = 12, 13


def _interrupt_main_thread(pid: int) -> bool:
    """Stop the main thread for a moment with ptrace and let it go: a blocking system call it
    sits in (epoll_wait of an idle loop, select, a sleep) returns EINTR, and
    CPython, which retries such calls, first checks for pending work, which runs the script
    sys.remote_exec queued. A call the kernel would restart on its own is made to return
    EINTR instead, as the gdb route does. Only for the system calls that CPython retries on
    EINTR (the same list as gdb's direct mode: not futex, where a lock's wait would only run
    pending calls); no signal is sent, no memory written. False if not done."""
    syscall = _main_thread_syscall(pid)
    if syscall not in _SAFE_SYSCALLS.values():
        return False
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    ptrace = libc.ptrace
    ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    ptrace.restype = ctypes.c_long
    if ptrace(_PTRACE_SEIZE, pid, None, None) != 0:
        return False  # another tracer, ptrace_scope...: gdb's nudge says why
    pending_signal = 0
    try:
        if ptrace(_PTRACE_INTERRUPT, pid, None, None) != 0:
            return False
        status = ctypes.c_int()
        if libc.waitpid(pid, ctypes.byref(status), _WALL) != pid:
            return False
        raw = status.value
        if (raw & 0xFF) == 0x7F and (raw >> 16) != _PTRACE_EVENT_STOP:
            # A signal arrived while we held the thread: hand it back on detach.
            pending_signal = (raw >> 8) & 0xFF
            return True
        registers = (ctypes.c_ulong * _USER_REGS)()
        if ptrace(_PTRACE_GETREGS, pid, None, ctypes.byref(registers)) != 0:
            return True
        result = ctypes.c_long(registers[_RAX]).value
        restarts = (_ERESTART_RESTARTBLOCK, _ERESTARTSYS, _ERESTARTNOHAND)
        if ctypes.c_long(registers[_ORIG_RAX]).value == syscall and result in restarts:
            registers[_RAX] = ctypes.c_ulong(_EINTR).value
            ptrace(_PTRACE_SETREGS, pid, None, ctypes.byref(registers))
        return True
    finally:
        ptrace(_PTRACE_DETACH, pid, None, ctypes.c_void_p(pending_signal or None))


def _nudge(info: TargetInfo, deadline: float) -> None:
    """Run `pass` on a main thread parked in a system call, so that it reaches an eval-breaker
    check and picks up the code queued by sys.remote_exec."""
    if not _gdb_usable():
        return
    try:
        _run_gdb(info, "pass\n", deadline, queue=False)
    except InjectionTimeout:
        raise  # gdb is still at it (waiting for the GIL): it says so, and finishes on its own
    except InjectionError:
        pass  # the remote_exec request stands; the caller keeps waiting for it


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


# --------------------------------------------------------------------------------------------------


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
            reason = _remote_debug_disabled(environ, argv)
            if reason is not None:
                raise RemoteDebugDisabled(
                    f"process {pid} was started with {reason}, which "
                    "forbids attaching: restart it without that"
                )
        if _inject_with_remote_exec(info, code, deadline):
            return
    _inject_with_gdb(info, code, deadline)
