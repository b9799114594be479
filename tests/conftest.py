"""Shared fixtures: a private socket directory for the whole run, and real target processes
started in subprocesses that signal readiness through a file."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator

import pytest

from tests.helpers import Target, spawn

_SOCKET_DIR = tempfile.mkdtemp(prefix="taskscope-test-")
os.chmod(_SOCKET_DIR, 0o700)
# Children inherit it, so agents started by the tests never touch the user's real directory.
os.environ["TASKSCOPE_SOCKET_DIR"] = _SOCKET_DIR

# A shell runs a job started with `&` with SIGINT ignored, and a program inherits that: the
# tests that stop a recorder or a `taskscope run` with Ctrl-C would find it deaf. A handler
# (unlike "ignored") is not inherited: every child starts with SIGINT as a terminal gives it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run's private socket directory goes with it (agents of killed targets leave
    their sockets behind)."""
    shutil.rmtree(_SOCKET_DIR, ignore_errors=True)


@pytest.fixture
def socket_dir() -> str:
    return _SOCKET_DIR


@pytest.fixture
def targets(tmp_path: os.PathLike[str]) -> Iterator[list[Target]]:
    """Collects started targets and kills whatever is still running after the test."""
    started: list[Target] = []
    yield started
    for target in started:
        target.kill()


@pytest.fixture
def start(targets: list[Target], tmp_path: os.PathLike[str]):  # type: ignore[no-untyped-def]
    def _start(
        script: str,
        *args: str,
        agent: bool = True,
        env: dict[str, str] | None = None,
        python: str | None = None,
    ) -> Target:
        target = spawn(script, *args, agent=agent, workdir=str(tmp_path), env=env, python=python)
        targets.append(target)
        return target

    return _start
