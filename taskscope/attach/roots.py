"""A target whose root is not ours (a chroot, a container's mount namespace): how we reach its
files from here, how it names the paths we hand it, and how a child of ours enters its root.
"""

from __future__ import annotations

import os
from collections.abc import Callable


def target_root(pid: int) -> str | None:
    """`/proc/PID/root` when process `pid` runs in another root (a chroot, a container's mount
    namespace) or sees other mounts than ours, a path through which we reach its files; None
    when its root and mounts are ours."""
    root = f"/proc/{pid}/root"
    try:
        theirs, ours = os.stat(root), os.stat("/")
    except OSError:
        return None
    if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
        return root
    # The same root, but mounts of its own (systemd's PrivateTmp=, `unshare -m`): its /tmp,
    # where the agent is staged and listens, is not ours. Through /proc/PID/root we walk its
    # mounts.
    try:
        if os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
            return root
    except OSError:
        pass
    return None


def path_inside(root: str, host_path: str) -> str:
    """The path that a process whose root is `root` uses for `host_path` (a path under root)."""
    return "/" + os.path.relpath(host_path, root).lstrip("/")


def seen_from_here(root: str | None, path: str) -> str:
    """A path of a process whose root is `root` (None: ours), as we reach it."""
    return path if root is None else root + path


def strip_root(real_root: str, path: str) -> str:
    """A path the kernel showed us from our root, as the target names it in its own."""
    if real_root != "/" and (path == real_root or path.startswith(real_root + "/")):
        return "/" + path[len(real_root) :].lstrip("/")
    return path


def target_file(pid: int, path: str) -> str:
    """A path under which we can read a file the target has mapped, even from another mount
    namespace; the plain path if the target's root isn't accessible."""
    path = path.removesuffix(" (deleted)")
    rooted = f"/proc/{pid}/root" + path
    try:
        os.stat(rooted)
    except OSError:
        return path
    return rooted


def enter_root(root: str) -> Callable[[], None]:
    """A pre-exec hook that moves the child into `root`, as py-spy runs tools in a container."""

    def enter() -> None:
        os.chroot(root)
        os.chdir("/")

    return enter
