"""Looking at a target without touching it: which Python it runs (version, executable,
libpython), read from its memory map and the `Py_Version` constant of the mapped interpreter,
and the clear error when it is not a Python taskscope can attach to.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from taskscope.attach.elf import dynamic_symbol
from taskscope.attach.errors import (
    NoSuchProcess,
    NotPython,
    PtraceNotPermitted,
    TargetExited,
    UnsupportedPython,
    ptrace_advice,
)
from taskscope.attach.roots import target_file
from taskscope.process_facts import command_line, process_name, process_state, status_field

MIN_VERSION = (3, 11)
REMOTE_EXEC_VERSION = (3, 14)


@dataclass(frozen=True, slots=True)
class TargetInfo:
    pid: int
    version: tuple[int, int]
    executable: str
    libpython: str | None


@dataclass(frozen=True, slots=True)
class Mapping:
    start: int
    end: int
    offset: int
    path: str


LIBPYTHON = re.compile(r"libpython(\d+)\.(\d+)[a-z]*\.so")
_PYTHON_EXE = re.compile(r"python(\d+)\.(\d+)[a-z]*$")


def _proc(pid: int, name: str) -> str:
    return f"/proc/{pid}/{name}"


def _check_pid(pid: int) -> None:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise NoSuchProcess(f"{pid!r} is not a process id: pass the pid of a Python process")
    if not os.path.exists(_proc(pid, "stat")):
        raise NoSuchProcess(f"no process with pid {pid}: check the pid (it may have exited)")


def read_maps(pid: int) -> list[Mapping]:
    maps = []
    for line in Path(_proc(pid, "maps")).read_text().splitlines():
        fields = line.split(None, 5)
        if len(fields) < 6 or not fields[5].startswith("/"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        maps.append(Mapping(start, end, int(fields[2], 16), fields[5]))
    return maps


def version_from_name(path: str) -> tuple[int, int] | None:
    base = os.path.basename(path.removesuffix(" (deleted)"))
    match = LIBPYTHON.search(base) or _PYTHON_EXE.search(base)
    return (int(match[1]), int(match[2])) if match else None


def inspect_target(pid: int) -> TargetInfo:
    """Identify the Python running in `pid`: version, executable and libpython, read from the
    process itself (its mappings and the `Py_Version` constant of the mapped interpreter)."""
    _check_pid(pid)
    if process_state(pid) in ("Z", "X"):
        raise TargetExited(f"process {pid} has exited (zombie): nothing left to inspect")
    try:
        executable = os.readlink(_proc(pid, "exe"))
        maps = read_maps(pid)
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
        raise PtraceNotPermitted(ptrace_advice(pid)) from exc
    libpython = next((m.path for m in maps if LIBPYTHON.search(os.path.basename(m.path))), None)
    interpreter = target_file(pid, libpython) if libpython is not None else _proc(pid, "exe")
    raw = dynamic_symbol(interpreter, "Py_Version")
    if raw is not None and len(raw) >= 4:
        hexversion = int.from_bytes(raw[:4], "little")
        version = ((hexversion >> 24) & 0xFF, (hexversion >> 16) & 0xFF)
    else:
        # Py_Version exists since 3.11: an older Python is recognised by its file names.
        named = version_from_name(libpython or "") or version_from_name(executable)
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
