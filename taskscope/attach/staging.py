"""Staging the agent where a target can import it: a read-only copy of taskscope's
standard-library-only files (the agent and the protocol), made once per agent version in a
directory only we can write to, in the target's own root when that is not ours. The target
then needs no taskscope in its own environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from taskscope import __version__
from taskscope.attach.errors import AttachError

#: The taskscope package, whose files are staged.
PACKAGE = Path(__file__).resolve().parent.parent
#: The files the agent needs, relative to the package: standard library only.
AGENT_FILES = ("__init__.py", "protocol", "agent")


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
