"""What can go wrong when taskscope loads its agent into a process, as errors whose message is
one line telling the user what to do, and the one line that explains a refused ptrace.
"""

from __future__ import annotations

import os
from pathlib import Path

from taskscope.client import ClientError
from taskscope.process_facts import process_name, status_field


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


class AttachError(ClientError):
    """The agent could not be started in the target; the message says why."""


def ptrace_advice(pid: int) -> str:
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
