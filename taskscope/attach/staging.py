"""Staging the agent where a target can import it: a read-only copy of taskscope's
standard-library-only files (the agent and the protocol), made once per agent version in a
directory only we can write to, in the target's own root when that is not ours. The target
then needs no taskscope in its own environment. The copy is byte-compiled for the target's
Python version here (`compile_stage`), so the target does not compile the agent's sources
while its loop waits for the GIL (it can't write the bytecode itself when it runs as another
user, or with PYTHONDONTWRITEBYTECODE, as many container images set).
"""

from __future__ import annotations

import compileall
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from taskscope import __version__
from taskscope.attach.errors import AttachError, InjectionError
from taskscope.attach.interpreter import matching_interpreter, run_as_target
from taskscope.attach.target import TargetInfo

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


def _compiled(stage: Path, version: tuple[int, int]) -> list[Path]:
    """The bytecode files the staged sources need for CPython `version`."""
    tag = f"cpython-{version[0]}{version[1]}"
    return [
        path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc"
        for path in sorted((stage / "taskscope").rglob("*.py"))
    ]


def compile_stage(stage: Path, stage_inside: Path, info: TargetInfo, root: str | None) -> None:
    """Byte-compile the staged copy (`stage`, `stage_inside` as the target names it) for the
    target's Python version, once: here when this interpreter is of that version, else with an
    interpreter of that version found beside the target's (`matching_interpreter`). Where
    none is found, the target compiles the sources itself, as it always did."""
    if all(path.exists() for path in _compiled(stage, info.version)):
        return
    try:
        if sys.version_info[:2] == info.version and sys.implementation.name == "cpython":
            compileall.compile_dir(str(stage), quiet=2)
        else:
            interpreter = matching_interpreter(info, root)
            if interpreter is None:
                return
            run_as_target(
                info,
                interpreter,
                "import compileall\ncompileall.compile_dir(sys.argv[2], quiet=2)",
                str(stage_inside),
                timeout=30,
            )
    except (OSError, subprocess.SubprocessError, InjectionError):
        return  # the target compiles the sources itself
    for path in stage.rglob("*"):
        with contextlib.suppress(OSError):
            path.chmod(0o755 if path.is_dir() else 0o644)
