"""Loading the agent into a process that never imported taskscope.

The injected code only bootstraps: it imports the agent from a private, read-only copy of
taskscope's standard-library-only files (so the target needs no taskscope in its own
environment), starts it, removes the copy's path from `sys.path`, and reports how it went in
a status file next to the socket. The agent then finds the loops and tasks that already exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from taskscope import __version__
from taskscope.client import ClientError
from taskscope.injection import (
    InjectionError,
    inspect_target,
    path_inside,
    run_in_process,
    target_root,
)
from taskscope.process_facts import environment, process_exists, process_uid
from taskscope.protocol import socket_path

PACKAGE = Path(__file__).resolve().parent
#: The files the agent needs, relative to the package: standard library only.
AGENT_FILES = ("__init__.py", "protocol.py", "agent")


class AttachError(ClientError):
    """The agent could not be started in the target; the message says why."""


def _target_uid(pid: int) -> int:
    uid = process_uid(pid)
    return os.getuid() if uid is None else uid


def target_socket_directory(pid: int) -> str:
    """Where the target's agent will listen, as the target names it: where this client looks
    when both agree on TASKSCOPE_SOCKET_DIR, else the target user's own default. A target in
    another root (a chroot, a container) decides alone; `seen_from_here` reaches the path."""
    root = target_root(pid)
    override = os.environ.get("TASKSCOPE_SOCKET_DIR")
    if override and root is None:
        return override
    uid = _target_uid(pid)
    environ = environment(pid) or {}
    if environ.get("TASKSCOPE_SOCKET_DIR"):
        return environ["TASKSCOPE_SOCKET_DIR"]
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        with contextlib.suppress(OSError):
            if os.stat(seen_from_here(root, runtime)).st_uid == uid:
                return os.path.join(runtime, "taskscope")
    return os.path.join("/tmp", f"taskscope-{uid}")


def seen_from_here(root: str | None, path: str) -> str:
    """A path of a process whose root is `root` (None: ours), as we reach it."""
    return path if root is None else root + path


def agent_socket(pid: int) -> str | None:
    """The socket of a live agent in `pid` where the target itself put it, seen from here; None
    if there is none (or it does not answer)."""
    path = seen_from_here(target_root(pid), socket_path(pid, target_socket_directory(pid)))
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return None
    finally:
        probe.close()
    return path


def _agent_digest() -> str:
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(_agent_sources()):
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _agent_sources() -> list[Path]:
    sources: list[Path] = []
    for name in AGENT_FILES:
        path = PACKAGE / name
        if path.is_dir():
            sources.extend(sorted(path.glob("*.py")))
        else:
            sources.append(path)
    return sources


def stage_agent(uid: int, root: str | None = None) -> Path:
    """A read-only copy of the agent's files that a process of `uid` can import (in `root`, the
    target's root seen from here, when it is not ours).

    Staged once per agent version under a directory only its owner can write to."""
    temporary = tempfile.gettempdir() if root is None else os.path.join(root, "tmp")
    base = Path(temporary) / f"taskscope-agent-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o755)
    info = base.lstat()
    if not base.is_dir() or base.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise AttachError(f"{base} is not a private directory of ours; remove it and retry")
    stage = base / _agent_digest()
    if (stage / "taskscope" / "agent" / "__init__.py").exists():
        return stage
    building = Path(tempfile.mkdtemp(prefix="stage-", dir=base))
    package = building / "taskscope"
    for source in _agent_sources():
        destination = package / source.relative_to(PACKAGE)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    for path in [building, *building.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        building.rename(stage)
    except OSError:  # another attach staged the same version first
        shutil.rmtree(building, ignore_errors=True)
    if uid != os.getuid():
        # A process of another user (we are root) must be able to read the copy.
        base.chmod(0o755)
    return stage


BOOTSTRAP = """
import os, sys
def _bootstrap(stage, socket_dir, status_path):
    added = False
    before = set(sys.modules)
    try:
        try:
            from taskscope import agent
        except ImportError:
            sys.path.insert(0, stage)
            added = True
            from taskscope import agent
        if hasattr(agent, "failure"):
            agent.install(socket_dir=socket_dir, report=False)
            if agent.socket_file() is None:
                raise RuntimeError(agent.failure() or "the agent could not listen")
        else:
            agent.install(socket_dir=socket_dir)
        agent._attach_modules = frozenset(
            name for name in set(sys.modules) - before if name.split(".")[0] == "taskscope"
        )
        outcome = {"ok": True, "socket": agent.socket_file()}
    except BaseException as error:
        outcome = {"ok": False, "error": type(error).__name__ + ": " + str(error)[:300]}
        for name in set(sys.modules) - before:
            if name == "taskscope" or name.startswith("taskscope."):
                del sys.modules[name]
    finally:
        if added and stage in sys.path:
            sys.path.remove(stage)
    import json
    os.makedirs(socket_dir, mode=0o700, exist_ok=True)
    tmp = status_path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(outcome, handle)
    os.replace(tmp, status_path)
def _quietly(*args):
    try:
        _bootstrap(*args)
    except BaseException:
        pass
import threading
threading.Thread(
    target=_quietly, args=(STAGE, SOCKET_DIR, STATUS), name="taskscope-attach", daemon=True
).start()
"""


def bootstrap_code(stage: Path, socket_dir: str, status_path: str) -> str:
    """Code run in the target: a single `exec` in a fresh namespace, so nothing is added to
    the target's `__main__`. It only starts a thread that imports and starts the agent and
    writes the status file: the thread it runs on (the main thread, often the loop's) is
    held for the start of a thread, not for the agent's imports."""
    body = (
        BOOTSTRAP.replace("STAGE", repr(str(stage)))
        .replace("SOCKET_DIR", repr(socket_dir))
        .replace("STATUS", repr(status_path))
    )
    return f"exec({body!r}, {{'__name__': 'taskscope_bootstrap'}})"


def load_agent(pid: int, timeout: float = 10.0) -> str:
    """Start the agent in process `pid` and return its socket path once it listens."""
    deadline = time.monotonic() + timeout
    info = inspect_target(pid)
    del info  # inspect_target raises the clear errors (not Python, too old...)
    root = target_root(pid)
    socket_dir = target_socket_directory(pid)
    expected = socket_path(pid, socket_dir)
    # Written by the target itself, so in a directory the target owns; every path handed to
    # the target is one of its own, read from here through its root.
    status_path = os.path.join(socket_dir, f"{pid}.attach.json")
    status_here = seen_from_here(root, status_path)
    stage = stage_agent(_target_uid(pid), root)
    stage_inside = Path(stage if root is None else path_inside(root, str(stage)))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(status_here)
    run_in_process(
        pid,
        bootstrap_code(stage_inside, socket_dir, status_path),
        timeout=max(1.0, deadline - time.monotonic()),
    )
    while time.monotonic() < deadline:
        if os.path.exists(status_here):
            with open(status_here) as handle:
                outcome = json.load(handle)
            os.unlink(status_here)
            if not outcome.get("ok"):
                raise AttachError(
                    f"the agent failed to start in process {pid}: {outcome.get('error')}"
                )
            return seen_from_here(root, str(outcome.get("socket") or expected))
        if not process_exists(pid):
            raise AttachError(f"process {pid} exited during the attach")
        time.sleep(0.01)
    raise AttachError(f"the agent did not start in process {pid} within {timeout:.0f} s")


__all__ = ["AttachError", "InjectionError", "load_agent", "stage_agent"]
