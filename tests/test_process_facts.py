"""taskscope.process_facts against real processes: a live child, a zombie, a pid that is gone,
pid 1, and a process of another user (read by us as root, and by that user reading ours)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskscope.process_facts import (
    ProcessFacts,
    command_line,
    environment,
    gone_since,
    process_alive,
    process_exists,
    process_name,
    process_state,
    process_uid,
    python_processes,
    status_field,
    user_name,
)
from tests.helpers import REPO, wait_for

#: An interpreter any user may run (ours may live in root's home).
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/usr/local/bin") or shutil.which(
    f"python{sys.version_info[0]}.{sys.version_info[1]}", path="/usr/bin:/usr/local/bin"
)
#: A child that says it is ready, then waits for its stdin to close.
CHILD = "import sys; print('ready', flush=True); sys.stdin.read()"


def start_child(
    *extra_args: str, python: str = sys.executable, **popen: Any
) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [python, "-c", CHILD, *extra_args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **popen,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


def finish(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.communicate(timeout=10)


@pytest.fixture
def live() -> Iterator[subprocess.Popen[str]]:
    # An empty argument and a non-ASCII one: argv must come back exactly.
    child = start_child("", "naïve arg", env={**os.environ, "TASKSCOPE_FACTS_TEST": "here=too"})
    yield child
    finish(child)


def test_a_live_child(live: subprocess.Popen[str]) -> None:
    # GIVEN a running child of ours
    pid = live.pid
    # THEN every fact about it is read
    assert process_exists(pid)
    assert process_alive(pid)
    assert process_state(pid) in ("R", "S")
    assert process_uid(pid) == os.getuid()
    uids = status_field(pid, "Uid")
    assert uids is not None and int(uids.split()[1]) == os.geteuid()  # real, effective...
    assert status_field(pid, "NoSuchField") is None
    assert process_name(pid) == os.path.basename(sys.executable)[:15]
    assert command_line(pid) == [sys.executable, "-c", CHILD, "", "naïve arg"]
    env = environment(pid)
    assert env is not None and env["TASKSCOPE_FACTS_TEST"] == "here=too"
    # It started before now, and after a moment long ago: the pid is not reused.
    assert not gone_since(pid, time.time())


def test_pid_reuse_is_seen_from_the_start_time(live: subprocess.Popen[str]) -> None:
    # GIVEN a socket made an hour ago by a pid that a new process now has
    # THEN the process that made it is proven gone
    assert gone_since(live.pid, time.time() - 3600)


def test_header_facts_of_a_live_child(live: subprocess.Popen[str]) -> None:
    facts = ProcessFacts(live.pid)
    info = facts.read()
    assert info["pid"] == live.pid
    assert info["alive"] is True
    assert info["command"] == f"{sys.executable} -c {CHILD}  naïve arg"
    assert info["rss"] > 1_000_000
    assert info["threads"] >= 1
    assert info["fds"] >= 3  # stdin, stdout, stderr at least
    # CPU % is measured between two reads, as top does.
    assert facts.read()["cpu_percent"] >= 0.0
    assert "stopped" not in info


def test_header_facts_of_a_stopped_child(live: subprocess.Popen[str]) -> None:
    facts = ProcessFacts(live.pid)
    os.kill(live.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: process_state(live.pid) == "T", what="the child stopped")
        info = facts.read()
        assert info["stopped"] == "signal" and info["alive"] is True
    finally:
        os.kill(live.pid, signal.SIGCONT)
    wait_for(lambda: "stopped" not in facts.read(), what="the child running again")


def test_the_child_is_listed_as_a_python(live: subprocess.Popen[str]) -> None:
    found = {proc.pid: proc for proc in python_processes()}
    assert live.pid in found
    assert found[live.pid].version == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert found[live.pid].command.startswith(sys.executable)
    assert os.getpid() not in found  # never ourselves


def test_a_zombie_exists_but_is_not_alive() -> None:
    # GIVEN a child that exited and was not reaped yet
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: process_state(child.pid) == "Z", what="the child to become a zombie")
    try:
        # THEN it exists (its pid is taken) but runs no more
        assert process_exists(child.pid)
        assert not process_alive(child.pid)
        assert ProcessFacts(child.pid).read()["alive"] is False
        assert command_line(child.pid) == []
    finally:
        child.wait()


def test_a_vanished_pid() -> None:
    # GIVEN a child that exited and was reaped: no process has its pid
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    pid = child.pid
    # THEN nothing about it can be read, and nothing raises
    assert not process_exists(pid)
    assert not process_alive(pid)
    assert process_state(pid) is None
    assert process_uid(pid) is None
    assert process_name(pid) == "?"
    assert command_line(pid) is None
    assert environment(pid) is None
    assert status_field(pid, "Uid") is None
    assert gone_since(pid, time.time())
    assert ProcessFacts(pid).read() == {"pid": pid, "alive": False}


def test_pid_1() -> None:
    assert process_exists(1)
    assert process_alive(1)
    assert process_uid(1) == 0
    assert process_name(1) != "?"
    assert command_line(1)  # anyone may read a command line
    # Its environment may be closed even to root (a non-dumpable init): None, never an error.
    try:
        with open("/proc/1/environ", "rb") as handle:
            handle.read()
        readable = True
    except OSError:
        readable = False
    assert (environment(1) is not None) == readable
    assert ProcessFacts(1).read()["alive"] is True


def test_user_names() -> None:
    assert user_name(0) == "root (uid 0)"
    assert user_name(4_000_000) == "uid 4000000"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a process as another user")
def test_another_users_process_seen_as_root() -> None:
    python = SYSTEM_PYTHON
    if python is None:
        pytest.skip("no system python3 that an unprivileged user can run")
    child = start_child(python=python, user=65534, group=65534, cwd="/")
    try:
        assert process_uid(child.pid) == 65534
        assert user_name(65534).endswith("(uid 65534)")
        assert process_alive(child.pid)
        assert environment(child.pid) is not None  # root may read it
    finally:
        finish(child)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a reader as another user")
def test_our_process_seen_by_another_user() -> None:
    # GIVEN an unprivileged reader (the system's python3, which nobody may run)
    python = SYSTEM_PYTHON
    if python is None:
        pytest.skip("no system python3 that an unprivileged user can run")
    check = subprocess.run(
        [
            python,
            "-c",
            "import sys; from taskscope import process_facts as f; pid = int(sys.argv[1]); "
            "print(f.process_exists(pid), f.process_alive(pid), f.process_uid(pid), "
            "f.environment(pid), bool(f.command_line(pid)))",
            str(os.getpid()),
        ],
        user=65534,
        group=65534,
        cwd="/",
        env={"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        pytest.skip(f"the system python3 can't run taskscope: {check.stderr.strip()[-200:]}")
    # THEN it sees that we run and who we are, but not our environment
    assert check.stdout.split() == ["True", "True", "0", "None", "True"]


def test_nothing_here_imports_psutil_until_asked() -> None:
    # The attach path runs under interpreters without psutil (the target user's own).
    code = (
        "import sys, os; from taskscope import process_facts as f; "
        "f.process_alive(os.getpid()); f.environment(os.getpid()); f.command_line(1); "
        "print('psutil' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
