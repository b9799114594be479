"""Finding Python processes on this machine that taskscope could attach to (psutil)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import psutil

_VERSION_IN_NAME = re.compile(r"python(\d+\.\d+)")
_LIBPYTHON = re.compile(r"libpython(\d+\.\d+)")


@dataclass(frozen=True, slots=True)
class PythonProcess:
    pid: int
    version: str | None
    command: str


def python_version_of(proc: psutil.Process) -> str | None:
    """major.minor of a process's interpreter, from its executable or its mapped libpython."""
    try:
        exe = proc.exe()
    except (psutil.Error, OSError):
        exe = ""
    match = _VERSION_IN_NAME.search(os.path.basename(exe))
    if match:
        return match.group(1)
    try:
        with open(f"/proc/{proc.pid}/maps") as maps:
            for line in maps:
                found = _LIBPYTHON.search(line)
                if found:
                    return found.group(1)
    except OSError:
        pass
    try:
        resolved = os.path.realpath(exe)
    except OSError:
        return None
    match = _VERSION_IN_NAME.search(os.path.basename(resolved))
    return match.group(1) if match else None


def python_processes() -> Iterator[PythonProcess]:
    """Running processes of this user (all, for root) whose executable is a Python."""
    me = os.getpid()
    uid = os.getuid()
    for proc in psutil.process_iter(["pid", "name", "cmdline", "uids"]):
        try:
            info = proc.info
            if info["pid"] == me or (uid != 0 and info["uids"] and info["uids"].real != uid):
                continue
            name = (info["name"] or "").lower()
            cmdline = info["cmdline"] or []
            first = os.path.basename(cmdline[0]).lower() if cmdline else ""
            if "python" not in name and "python" not in first:
                continue
            version = python_version_of(proc)
            yield PythonProcess(info["pid"], version, " ".join(cmdline) or name)
        except (psutil.Error, OSError):
            continue
