"""The ptrace interrupt: stop a target's main thread for a moment and let it go, so that the
blocking system call it is parked in returns EINTR and CPython, before retrying it, runs what
`sys.remote_exec` queued. No signal is sent and no memory written.
"""

from __future__ import annotations

import platform

from taskscope.attach.syscalls import (
    EINTR,
    ERESTART_RESTARTBLOCK,
    ERESTARTNOHAND,
    ERESTARTSYS,
    SAFE_SYSCALLS,
)

_PTRACE_DETACH, _PTRACE_SEIZE, _PTRACE_INTERRUPT = 0x11, 0x4206, 0x4207
_PTRACE_EVENT_STOP = 128
_WALL = 0x40000000


def _main_thread_syscall(pid: int) -> int | None:
    """The system call the main thread is blocked in, or None (running, or unreadable)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/syscall") as file:
            first = file.read().split(maxsplit=1)[0]
    except (OSError, IndexError):
        return None
    return int(first) if first.lstrip("-").isdigit() and int(first) >= 0 else None


#: x86-64 `struct user_regs_struct`: 27 registers; where rax and orig_rax are.
_USER_REGS, _RAX, _ORIG_RAX = 27, 10, 15
_PTRACE_GETREGS, _PTRACE_SETREGS = 12, 13


def interrupt_main_thread(pid: int) -> bool:
    """Stop the main thread for a moment with ptrace and let it go: a blocking system call it
    sits in (epoll_wait of an idle loop, select, a sleep) returns EINTR, and
    CPython, which retries such calls, first checks for pending work, which runs the script
    sys.remote_exec queued. A call the kernel would restart on its own is made to return
    EINTR instead, as the gdb route does. Only for the system calls that CPython retries on
    EINTR (the same list as gdb's direct mode: not futex, where a lock's wait would only run
    pending calls); no signal is sent, no memory written. False if not done."""
    syscall = _main_thread_syscall(pid)
    if syscall not in SAFE_SYSCALLS.values():
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
        restarts = (ERESTART_RESTARTBLOCK, ERESTARTSYS, ERESTARTNOHAND)
        if ctypes.c_long(registers[_ORIG_RAX]).value == syscall and result in restarts:
            registers[_RAX] = ctypes.c_ulong(EINTR).value
            ptrace(_PTRACE_SETREGS, pid, None, ctypes.byref(registers))
        return True
    finally:
        ptrace(_PTRACE_DETACH, pid, None, ctypes.c_void_p(pending_signal or None))
