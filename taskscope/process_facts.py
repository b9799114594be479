"""Facts about running processes, read in one place for every part of taskscope: whether a
process exists and still runs, who owns it, its name, command line, environment and status
fields, when it started, what the dashboard's header shows (CPU, memory, threads, open files),
and which processes of this machine are Pythons.

Nothing here changes a process, and nothing raises for a process that is gone or closed to
us: a fact that cannot be read is None (or the documented stand-in). psutil is imported only
by the facts it serves (resources, start time, the process list), so that attaching works
under an interpreter without it (the target user's own, when we run as them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    import psutil


def _proc(pid: int, name: str) -> str:
    return f"/proc/{pid}/{name}"


# --------------------------------------------------------------------------------------------------
# Existence, state and owner


def process_exists(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie does; one of another user too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, D, T, Z, X...), None if there is no such
    process."""
    try:
        with open(_proc(pid, "stat")) as stat_file:
            stat = stat_file.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def process_alive(pid: int) -> bool:
    """Whether the process exists and has not exited (a zombie has)."""
    return process_state(pid) not in (None, "Z", "X")


def process_uid(pid: int) -> int | None:
    """The uid a process runs as (None if it cannot be read)."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def user_name(uid: int) -> str:
    """`name (uid N)`, or `uid N` for a uid with no name."""
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def status_field(pid: int, field: str) -> str | None:
    """One field of /proc/PID/status (`Uid`, `Gid`, `TracerPid`, `CapEff`...), as written
    there; None if the process or the field is missing."""
    try:
        with open(_proc(pid, "status")) as status:
            for line in status.read().splitlines():
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def thread_cpu_seconds(pid: int) -> dict[int, float] | None:
    """The CPU seconds (user and system) each thread of the process has used, by thread id
    (the main thread's id is the pid); None when the process cannot be read."""
    import psutil

    try:
        return {
            thread.id: thread.user_time + thread.system_time
            for thread in psutil.Process(pid).threads()
        }
    except (psutil.Error, OSError):
        return None


def gone_since(pid: int, moment: float) -> bool:
    """Whether the process that had `pid` at `moment` (seconds since the epoch) is proven
    gone: no process has that pid, or the one that has it started after `moment` (the pid
    was reused). Not knowing is not gone."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - a dependency of the client
        return not process_exists(pid)
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    return bool(started > moment + 1.0)


# --------------------------------------------------------------------------------------------------
# What it runs


def process_name(pid: int) -> str:
    """The short name the kernel keeps for a process (/proc/PID/comm), `?` if unreadable."""
    try:
        with open(_proc(pid, "comm")) as comm:
            return comm.read().strip()
    except OSError:
        return "?"


def command_line(pid: int) -> list[str] | None:
    """The process's argv, empty arguments included; None if it cannot be read. A process
    that rewrote its command line without a final NUL gives that text as one argument."""
    try:
        with open(_proc(pid, "cmdline"), "rb") as cmdline:
            raw = cmdline.read()
    except OSError:
        return None
    if not raw:
        return []
    return [arg.decode(errors="replace") for arg in raw.removesuffix(b"\0").split(b"\0")]


def environment(pid: int) -> dict[str, str] | None:
    """The environment the process started with; None if it cannot be read (another user's
    process, when we are not root)."""
    try:
        with open(_proc(pid, "environ"), "rb") as environ:
            raw = environ.read()
    except OSError:
        return None
    variables = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            variables[key.decode(errors="replace")] = value.decode(errors="replace")
    return variables


# --------------------------------------------------------------------------------------------------
# The dashboard's header


class ProcessInfo(TypedDict, total=False):
    """Facts about the process for the header; any of them may be missing."""

    pid: int
    command: str
    python: str
    cpu_percent: float
    rss: int
    threads: int
    fds: int
    alive: bool
    #: Why nothing runs in it, when it is stopped: "signal" (a SIGSTOP, Ctrl-Z) or "tracer"
    #: (a debugger holds it); missing while it runs.
    stopped: str
    #: Where the process runs when not on this host (`ssh://host`, taskscope.remote): its
    #: CPU, memory and the rest are the remote's, not read here.
    host: str


class ProcessFacts:
    """psutil facts about one process. CPU % is measured between two calls, as top does."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._process: psutil.Process | None = None

    def read(self) -> ProcessInfo:
        import psutil

        info: ProcessInfo = {"pid": self.pid}
        try:
            if self._process is None:
                self._process = psutil.Process(self.pid)
                self._process.cpu_percent(None)
            process = self._process
            with process.oneshot():
                status = process.status()
                info["alive"] = process.is_running() and status != psutil.STATUS_ZOMBIE
                if status == psutil.STATUS_STOPPED:
                    info["stopped"] = "signal"
                elif status == psutil.STATUS_TRACING_STOP:
                    info["stopped"] = "tracer"
                info["command"] = " ".join(process.cmdline())
                info["cpu_percent"] = process.cpu_percent(None)
                info["rss"] = process.memory_info().rss
                info["threads"] = process.num_threads()
                try:
                    info["fds"] = process.num_fds()
                except (psutil.AccessDenied, AttributeError):
                    pass
        except psutil.NoSuchProcess:
            info["alive"] = False
        except psutil.AccessDenied:
            pass
        return info


# --------------------------------------------------------------------------------------------------
# The Pythons of this machine

_VERSION_IN_NAME = re.compile(r"python(\d+\.\d+)")
_LIBPYTHON = re.compile(r"libpython(\d+\.\d+)")


@dataclass(frozen=True, slots=True)
class PythonProcess:
    pid: int
    version: str | None
    command: str


def python_version_of(proc: psutil.Process) -> str | None:
    """major.minor of a process's interpreter, from its executable or its mapped libpython."""
    import psutil

    try:
        exe = proc.exe()
    except (psutil.Error, OSError):
        exe = ""
    match = _VERSION_IN_NAME.search(os.path.basename(exe))
    if match:
        return match.group(1)
    try:
        with open(_proc(proc.pid, "maps")) as maps:
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


#: The fork server's command, which the workers it forks keep (the start method by default
#: from 3.14 on Linux): a process of that command whose parent has it too is a worker.
_FORKSERVER = "multiprocessing.forkserver"


#: What a multiprocessing process's command says it is (see `multiprocessing_role`).
_MULTIPROCESSING_ROLES = (
    ("multiprocessing.resource_tracker", "resource_tracker"),
    ("multiprocessing.forkserver", "fork_server"),
    ("multiprocessing.spawn import spawn_main", "spawned_worker"),
)


#: The helpers multiprocessing starts next to its workers.
_HELPER_ROLES = frozenset({"resource_tracker", "fork_server"})


def multiprocessing_role(command: str, parent_command: str | None) -> str | None:
    """What multiprocessing started this process as, from its command line and its
    parent's: `resource_tracker`, `fork_server`, `forked_worker` (a process the fork server
    forked: it keeps the server's command), `spawned_worker`; None for any other process."""
    for marker, role in _MULTIPROCESSING_ROLES:
        if marker in command:
            if role == "fork_server" and parent_command and _FORKSERVER in parent_command:
                return "forked_worker"
            return role
    return None


def _looks_python(name: str, cmdline: list[str]) -> bool:
    first = os.path.basename(cmdline[0]).lower() if cmdline else ""
    return "python" in name.lower() or "python" in first


def has_children(pid: int) -> bool | None:
    """Whether `pid` has child processes, from its threads' `children` files in /proc
    (None where the kernel has none, or they cannot be read): a look that costs far less
    than `python_children`'s walk of every process."""
    try:
        threads = os.listdir(_proc(pid, "task"))
        for thread in threads:
            with open(_proc(pid, f"task/{thread}/children")) as children:
                if children.read().strip():
                    return True
    except OSError:
        return None
    return False


def python_children(pid: int) -> list[PythonProcess]:
    """The Python processes under `pid` (its children, theirs, and so on), oldest first;
    multiprocessing's own helpers (resource tracker, fork server) left out. Empty for a
    process that is gone or has none, or under an interpreter without psutil (the target
    user's own, when we run as them: each process is then looked at alone). This command's
    own process and its parents are never among them."""
    try:
        import psutil
    except ImportError:
        return []
    try:
        descendants = psutil.Process(pid).children(recursive=True)
        # Never this command itself, nor what runs it (`taskscope ps $$` from a shell).
        me = psutil.Process()
        ourselves = {me.pid, *(parent.pid for parent in me.parents())}
    except psutil.Error:
        return []
    read: list[tuple[Any, str, str, list[str], float, int]] = []
    for proc in descendants:
        if proc.pid in ourselves:
            continue
        try:
            with proc.oneshot():
                cmdline = proc.cmdline()
                name = proc.name()
                started = proc.create_time()
                parent = proc.ppid()
                zombie = proc.status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            continue
        if not zombie:
            read.append((proc, " ".join(cmdline), name, cmdline, started, parent))
    commands = {proc.pid: command for proc, command, *_rest in read}
    found: list[tuple[float, PythonProcess]] = []
    for proc, command, name, cmdline, started, parent in read:
        if multiprocessing_role(command, commands.get(parent)) in _HELPER_ROLES:
            continue  # Pythons that never run asyncio; the fork server's children are workers
        if not _looks_python(name, cmdline):
            continue
        found.append((started, PythonProcess(proc.pid, python_version_of(proc), command or name)))
    found.sort(key=lambda item: (item[0], item[1].pid))
    return [proc for _started, proc in found]


def programs_of_launcher(pid: int) -> list[PythonProcess] | None:
    """The Python programs a process that is not itself Python runs (`timeout 60 python
    app.py`, `uv run app.py`, a shell, init): the topmost Pythons among its descendants, oldest
    first (a program's own workers are not counted beside it). None when `pid` is a Python
    interpreter (a uvicorn or gunicorn master, known by its executable whatever its name) or
    cannot be read."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        if python_version_of(psutil.Process(pid)) is not None:
            return None
    except psutil.Error:
        return None
    children = python_children(pid)
    pids = {child.pid for child in children}
    return [child for child in children if parent_pid(child.pid) not in pids]


def parent_pid(pid: int) -> int | None:
    """The pid of the process's parent (from /proc/PID/stat), None if unreadable."""
    try:
        with open(_proc(pid, "stat")) as stat_file:
            stat = stat_file.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]) if len(fields) > 1 else None


def python_processes() -> Iterator[PythonProcess]:
    """Running processes of this user (all, for root) whose executable is a Python."""
    import psutil

    me = os.getpid()
    uid = os.getuid()
    for proc in psutil.process_iter(["pid", "name", "cmdline", "uids"]):
        try:
            info = proc.info
            if info["pid"] == me or (uid != 0 and info["uids"] and info["uids"].real != uid):
                continue
            name = (info["name"] or "").lower()
            cmdline = info["cmdline"] or []
            if not _looks_python(name, cmdline):
                continue
            version = python_version_of(proc)
            yield PythonProcess(info["pid"], version, " ".join(cmdline) or name)
        except (psutil.Error, OSError):
            continue
