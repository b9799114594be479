"""Where agents listen: the private per-user directory of agent sockets, and the socket
path of a process. Both sides use it: the agent to bind, clients to find it."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping


class InsecureDirectory(Exception):
    """The socket directory exists but could be read or written by someone else."""


def socket_directory(
    environ: Mapping[str, str] | None = None, uid: int | None = None, root: str | None = None
) -> str:
    """The per-user directory holding agent sockets (not created here): ours, or that of a
    process with environment `environ` and owner `uid` whose root, when not ours, we reach
    through `root` (the path returned is as that process names it)."""
    environ = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    override = environ.get("TASKSCOPE_SOCKET_DIR")
    if override:
        return override
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        seen = runtime if root is None else root + runtime
        try:
            info = os.stat(seen)
        except OSError:
            info = None
        if info is not None and stat.S_ISDIR(info.st_mode) and info.st_uid == uid:
            return os.path.join(runtime, "taskscope")
    return os.path.join("/tmp", f"taskscope-{uid}")


def fallback_socket_directory() -> str | None:
    """Where agents listen when the usual directory is not private (another user made
    `/tmp/taskscope-UID` first): a directory in the user's home, which nobody else can
    create. None when there is no home, or its path is too long for a socket."""
    try:
        home = os.path.expanduser("~")
    except Exception:
        return None
    if not home or home == "~" or not os.path.isabs(home):
        return None
    path = os.path.join(home, ".taskscope-sockets")
    # A socket path is limited to 107 bytes; the longest pid has 7 digits.
    return path if len(os.fsencode(path)) + len("/4194304.sock") <= 107 else None


def socket_directories() -> list[str]:
    """Where a client looks for agents: the usual directory, then the fallback (unless the
    user chose one with $TASKSCOPE_SOCKET_DIR)."""
    primary = socket_directory()
    if os.environ.get("TASKSCOPE_SOCKET_DIR"):
        return [primary]
    fallback = fallback_socket_directory()
    return [primary] if fallback is None or fallback == primary else [primary, fallback]


def directory_is_private(path: str) -> bool:
    """Whether `path` is a directory of ours that nobody else can read or write."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def ensure_private_directory(path: str) -> None:
    """Create `path` with mode 0700, or check that the existing one is ours and private."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise InsecureDirectory(f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise InsecureDirectory(f"{path} belongs to uid {info.st_uid}, not to us")
    if info.st_mode & 0o077:
        raise InsecureDirectory(f"{path} is readable or writable by others")


#: How /proc names the first pid namespace (the kernel's PROC_PID_INIT_INO, fixed since 3.8).
_FIRST_PID_NAMESPACE = "pid:[4026531836]"


def socket_path(pid: int, directory: str | None = None) -> str:
    """Where the agent of process `pid` (as this process numbers it) listens: see
    `socket_name`."""
    return os.path.join(
        directory or socket_directory(),
        socket_name(pid_in_own_namespace(pid), _pid_namespace(str(pid))),
    )


def own_socket_path(directory: str) -> str:
    """Where this process's agent listens (the agent's side of `socket_path`)."""
    return os.path.join(directory, socket_name(os.getpid(), _pid_namespace("self")))


def socket_name(own_pid: int, namespace: str | None) -> str:
    """An agent socket's file name: the pid the process has in its own pid namespace (what
    `os.getpid()` says there), and for a namespace other than the first one (a container's)
    that namespace's inode as well (`1-4026532201.sock`), so that two containers' pid 1
    sharing a directory never take each other's socket."""
    if namespace is None or namespace == _FIRST_PID_NAMESPACE or not namespace.startswith("pid:["):
        return f"{own_pid}.sock"
    return f"{own_pid}-{namespace[5:-1]}.sock"


def pid_in_own_namespace(pid: int) -> int:
    """The pid process `pid` has in its own pid namespace: the last of its NSpid line (the
    same pid when it runs in ours)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return pid


def _pid_namespace(proc_entry: str) -> str | None:
    """`pid:[INODE]` of the pid namespace of /proc/ENTRY (None when it cannot be read)."""
    try:
        return os.readlink(f"/proc/{proc_entry}/ns/pid")
    except OSError:
        return None
