"""An interpreter of the target's own Python version, and running a small script under it
(inside the target's root when that is not ours): `sys.remote_exec` and `_remote_debugging`
must be called by the target's exact major.minor.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from taskscope.attach.errors import InjectionError
from taskscope.attach.roots import enter_root, seen_from_here, strip_root, target_root
from taskscope.attach.target import TargetInfo, version_from_name


def matching_interpreter(info: TargetInfo, root: str | None = None) -> str | None:
    """An interpreter of the target's major.minor that we can run; with `root`, one inside the
    target's root, as a path there (it will run there: its libc may not be ours)."""
    name = f"python{info.version[0]}.{info.version[1]}"
    candidates = []
    executable, libpython = info.executable, info.libpython
    if root is not None:
        real_root = os.path.realpath(root)
        executable = strip_root(real_root, executable)
        libpython = strip_root(real_root, libpython) if libpython else None
    if re.fullmatch(r"python[\d.]*[a-z]*", os.path.basename(executable)):
        candidates.append(executable)
    if libpython:
        prefix = os.path.dirname(os.path.dirname(libpython))
        candidates.append(os.path.join(prefix, "bin", name))
    if root is None:
        found = shutil.which(name)
    else:
        found = next(
            (
                os.path.join(folder, name)
                for folder in ("/usr/local/bin", "/usr/bin", "/bin")
                if os.path.exists(root + os.path.join(folder, name))
            ),
            None,
        )
    if found:
        candidates.append(found)
    for candidate in candidates:
        here = seen_from_here(root, candidate)
        version = version_from_name(os.path.realpath(here))
        if root is not None and version is None:
            version = version_from_name(candidate)
        if os.access(here, os.X_OK) and version in (None, info.version):
            return candidate
    return None


#: A script run under the target's own interpreter: `{body}` (indented) runs with the target's
#: pid in `pid` and the other arguments in `sys.argv[2:]`; what it raises becomes an exit
#: status the caller reads: 3 another version, 4 not permitted, 5 no such process, 6 other,
#: 7 the feature is missing (no sys.remote_exec, no _remote_debugging).
_AS_TARGET = """\
import sys
if sys.version_info[:2] != ({major}, {minor}):
    sys.exit(3)
pid = int(sys.argv[1])
try:
{body}
except PermissionError as exc:
    print("EPERM", exc, file=sys.stderr)
    sys.exit(4)
except ProcessLookupError as exc:
    print("ESRCH", exc, file=sys.stderr)
    sys.exit(5)
except (AttributeError, ImportError) as exc:
    print("ENOSYS", exc, file=sys.stderr)
    sys.exit(7)
except Exception as exc:
    print(type(exc).__name__, exc, file=sys.stderr)
    sys.exit(6)
"""


def run_as_target(
    info: TargetInfo,
    interpreter: str,
    body: str,
    *arguments: str,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """Run `body` (Python source, see `_AS_TARGET`) under `interpreter`, an interpreter of the
    target's own version, inside the target's root when that is not ours."""
    root = target_root(info.pid)
    if root is not None and not os.path.exists(os.path.join(root, "proc", "self")):
        # sys.remote_exec and _remote_debugging find the target through /proc.
        raise InjectionError(
            f"process {info.pid} runs in a root with no /proc mounted, where its own Python "
            f"cannot look at it: mount it (mount -t proc proc {os.path.realpath(root)}/proc)"
        )
    indented = "".join(f"    {line}\n" for line in body.splitlines())
    script = _AS_TARGET.format(major=info.version[0], minor=info.version[1], body=indented)
    return subprocess.run(
        [interpreter, "-I", "-S", "-c", script, str(info.pid), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=None if root is None else enter_root(root),
    )
