"""Attaching from the host to a process whose root is not ours: a Python 3.14 or 3.15 program
running in the Debian sid chroot that CI makes (`.ci/sid-chroot.sh`), as a process in a
container would be. Its interpreter needs sid's libc, so taskscope must run it inside the
target's own root, stage the agent there, and find the socket where the target put it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, VICTIM_PROGRAM, mount_proc_in, wait_for

CHROOT = Path(os.environ.get("TASKSCOPE_SID_CHROOT", "/var/cache/taskscope-ci/sid"))

TARGET = VICTIM_PROGRAM

pytestmark = [
    pytest.mark.skipif(
        not (CHROOT / "usr/bin/python3.14").exists(),
        reason=f"attaches from the host into the sid chroot at {CHROOT}: made by .ci/run, "
        "and run from the host's 3.11-3.13 (a run inside the chroot has no chroot to enter)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="entering another root needs root"),
]


def taskscope(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TASKSCOPE_SOCKET_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "taskscope", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )


@pytest.fixture(params=["3.14", "3.15"])
def chrooted(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    version: str = request.param
    mount_proc_in(CHROOT)
    workdir = Path(tempfile.mkdtemp(prefix="taskscope-chroot-test-", dir=CHROOT / "tmp"))
    inside = "/tmp/" + workdir.name
    (workdir / "app.py").write_text(TARGET)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    process = subprocess.Popen(
        [
            shutil.which("chroot") or "/usr/sbin/chroot",
            str(CHROOT),
            f"/usr/bin/python{version}",
            f"{inside}/app.py",
            f"{inside}/ready",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for(lambda: (workdir / "ready").exists() or process.poll() is not None, what="ready")
        assert process.poll() is None, process.communicate()
        yield process, workdir
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.communicate()
        shutil.rmtree(workdir, ignore_errors=True)


def test_tree_and_cancel_from_the_host(chrooted: tuple[subprocess.Popen[str], Path]) -> None:
    process, _workdir = chrooted
    # GIVEN a program in the chroot that never heard of taskscope
    # WHEN the host's taskscope asks for its tree
    started = time.monotonic()
    tree = taskscope("tree", str(process.pid))
    first_look = time.monotonic() - started
    # THEN it sees every task and what each awaits, through the target's own interpreter
    assert tree.returncode == 0, tree.stderr
    assert "victim()" in tree.stdout and "awaiting task victim" in tree.stdout
    assert "awaiting sleep" in tree.stdout
    assert first_look < 20
    # WHEN it cancels the awaited task by id (the agent is found again, not loaded twice)
    ps = taskscope("ps", "--no-inject", str(process.pid))
    assert ps.returncode == 0, ps.stderr
    victim_id = next(line.split()[0] for line in ps.stdout.splitlines() if " victim " in line)
    # (`id:N`: a bare N also names the task called Task-N, here main's, and would be refused)
    cancel = taskscope("cancel", "--no-inject", str(process.pid), f"id:{victim_id}")
    assert cancel.returncode == 0, cancel.stderr
    # THEN the target sees the cancellation, and keeps running
    assert process.stdout is not None
    assert process.stdout.readline() == "victim cancelled\n"
    assert process.poll() is None
    after = taskscope("tree", "-a", str(process.pid))
    assert "1 cancelled" in after.stdout, after.stdout


def test_no_host_libraries_leak_into_the_target(
    chrooted: tuple[subprocess.Popen[str], Path],
) -> None:
    # The host's gdb and interpreter must not load host libraries into the target: after an
    # attach every library it maps still comes from its own root.
    process, _workdir = chrooted
    assert taskscope("dump", str(process.pid)).returncode == 0
    maps = Path(f"/proc/{process.pid}/maps").read_text().splitlines()
    libraries = {line.split()[-1] for line in maps if ".so" in line.split()[-1]}
    assert libraries, maps[:5]
    assert all(path.startswith(str(CHROOT)) for path in libraries), libraries
    assert process.poll() is None
