"""The x86-64 system calls both routes into a parked main thread rely on (gdb's direct run, the
ptrace interrupt): which are safe to interrupt, and the kernel's restart codes they turn into
EINTR.
"""

from __future__ import annotations

# x86-64 system calls in which CPython blocks with the GIL released and retries on EINTR, and which
# libc never issues while holding one of its own locks.  futex is deliberately absent: a thread
# waiting for the GIL or for malloc's lock is also in futex.
SAFE_SYSCALLS = {
    "read": 0, "write": 1, "poll": 7, "pread64": 17, "pwrite64": 18, "readv": 19, "writev": 20,
    "select": 23, "pause": 34, "nanosleep": 35, "connect": 42, "accept": 43, "sendto": 44,
    "recvfrom": 45, "sendmsg": 46, "recvmsg": 47, "wait4": 61, "flock": 73,
    "rt_sigtimedwait": 128, "rt_sigsuspend": 130, "clock_nanosleep": 230, "epoll_wait": 232,
    "waitid": 247, "pselect6": 270, "ppoll": 271, "epoll_pwait": 281, "accept4": 288,
    "recvmmsg": 299, "sendmmsg": 307, "epoll_pwait2": 441,
}  # fmt: skip
SYS_FUTEX = 202
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = -512, -513, -514, -516
EINTR = -4


def syscall_name(number: int) -> str:
    if number < 0:
        return "user space"
    names = {n: name for name, n in SAFE_SYSCALLS.items()} | {SYS_FUTEX: "futex"}
    return names.get(number, f"system call {number}")
