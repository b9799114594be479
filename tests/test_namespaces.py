"""Attaching to processes that run in namespaces of their own: a pid namespace, as every Docker
container's (each thinks it is pid 1; the user knows them by the pid they have here; two of them
share a socket directory here, as two containers never do but `unshare -p` programs may), and
a mount namespace with a /tmp of its own, as systemd's PrivateTmp= gives a service."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskscope.attach.staging import stage_agent
from tests.helpers import VICTIM_PROGRAM, run_cli, wait_for

TARGET = VICTIM_PROGRAM

pytestmark = [
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a pid namespace of its own needs root"),
    pytest.mark.skipif(
        shutil.which("gdb") is None and sys.version_info < (3, 14),
        reason="attaching to Python 3.11-3.13 needs gdb (apt-get install gdb)",
    ),
]


class Contained:
    """A target started by `unshare -p -f`: the Python process under it, and its output."""

    def __init__(self, workdir: Path, name: str) -> None:
        script = workdir / "contained.py"
        script.write_text(TARGET)
        self.ready = workdir / f"{name}.ready"
        self.output = workdir / f"{name}.out"
        self.launcher = subprocess.Popen(
            ["unshare", "-p", "-f", sys.executable, str(script), str(self.ready)],
            stdout=self.output.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = 0

    def wait_ready(self) -> Contained:
        wait_for(self.ready.exists, 20, "the contained program's ready file")
        children = Path(f"/proc/{self.launcher.pid}/task/{self.launcher.pid}/children")
        self.pid = int(children.read_text().split()[0])
        return self

    def own_pid(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(
            next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[-1]
        )

    def kill(self) -> None:
        os.killpg(self.launcher.pid, signal.SIGKILL)
        self.launcher.wait()


@pytest.fixture
def two_contained(tmp_path: Path) -> Iterator[tuple[Contained, Contained]]:
    if subprocess.run(["unshare", "-p", "-f", "true"]).returncode:
        pytest.skip("no pid namespace of its own can be made here")
    first, second = Contained(tmp_path, "first"), Contained(tmp_path, "second")
    try:
        yield first.wait_ready(), second.wait_ready()
    finally:
        first.kill()
        second.kill()


def test_a_process_in_its_own_pid_namespace_is_reached_by_its_pid_here(
    two_contained: tuple[Contained, Contained],
) -> None:
    # GIVEN two asyncio programs, each pid 1 in a pid namespace of its own, that never loaded
    # taskscope
    first, second = two_contained
    if (first.own_pid(), second.own_pid()) != (1, 1):
        pytest.skip("unshare did not give the programs pid namespaces of their own")
    # WHEN each is looked at by the pid it has here
    shown = [run_cli("ps", str(target.pid), timeout=90) for target in two_contained]
    # THEN each shows its own tasks under that pid (not "pid 1"), though both agents are pid 1
    # and listen in one directory
    for target, result in zip(two_contained, shown, strict=True):
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"pid {target.pid} · "), result.stdout
        assert "victim" in result.stdout
    dumped = run_cli("dump", str(first.pid), timeout=60)
    assert json.loads(dumped.stdout)["pid"] == first.pid
    # AND `list` says both have an agent now
    listed = {line.split()[0]: line.split()[2] for line in run_cli("list").stdout.splitlines()[1:]}
    assert listed.get(str(first.pid)) == listed.get(str(second.pid)) == "agent", listed
    # AND a cancel reaches the program it names, and not the other one
    cancel = run_cli("cancel", str(second.pid), "victim", timeout=60)
    assert cancel.returncode == 0, cancel.stderr
    wait_for(lambda: "victim cancelled" in second.output.read_text(), 20, "the cancel")
    assert "victim cancelled" not in first.output.read_text()
    again = run_cli("ps", "-a", str(first.pid), timeout=60)
    assert any(
        line.split()[1:3] == ["pending", "victim"] for line in again.stdout.splitlines()[2:]
    ), again.stdout


def test_a_service_with_a_private_tmp_is_attached(tmp_path: Path) -> None:
    # GIVEN an asyncio program in a mount namespace whose /tmp is its own (PrivateTmp=), where
    # the agent is staged and listens; its files live outside /tmp
    if subprocess.run(["unshare", "-m", "--propagation", "private", "true"]).returncode:
        pytest.skip("no mount namespace of its own can be made here")
    home = Path(tempfile.mkdtemp(prefix="taskscope-private-tmp-", dir=os.path.expanduser("~")))
    try:
        script, ready = home / "service.py", home / "ready"
        script.write_text(TARGET)
        launcher = subprocess.Popen(
            [
                "unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs tmpfs /tmp && exec "$0" "$1" "$2"',
                # The interpreter itself, not a venv's link to it, which may be under /tmp.
                os.path.realpath(sys.executable), str(script), str(ready),
            ],
            stdout=(home / "out").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_for(ready.exists, 20, "the service's ready file")
            pid = launcher.pid  # sh exec'd the program
            assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
            # WHEN it is looked at, then a task cancelled
            shown = run_cli("ps", str(pid), timeout=90)
            cancel = run_cli("cancel", str(pid), "victim", timeout=60)
            # THEN both work (the agent was staged in its /tmp, not ours, and found there)
            assert shown.returncode == 0, shown.stderr
            assert "victim" in shown.stdout
            assert cancel.returncode == 0, cancel.stderr
            wait_for(lambda: "victim cancelled" in (home / "out").read_text(), 20, "the cancel")
        finally:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_an_attach_is_not_hidden_by_a_finder_cached_for_the_stage_path(tmp_path: Path) -> None:
    # GIVEN a program that cannot import taskscope by itself, whose import system cached "no
    # finder" for the path where the agent is staged (what an attach that could not see the
    # stage leaves behind: a directory missing when first tried)
    stage = stage_agent(os.getuid())
    script, ready = tmp_path / "cached.py", tmp_path / "ready"
    script.write_text(
        "import sys\n"
        f"sys.path_importer_cache[{str(stage)!r}] = None\n"
        + TARGET.replace("import asyncio, sys", "import asyncio")
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    process = subprocess.Popen(
        [os.path.realpath(sys.executable), str(script), str(ready)],  # not the venv's python
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        wait_for(ready.exists, 20, "the program's ready file")
        # WHEN it is attached to
        shown = run_cli("ps", str(process.pid), timeout=90)
        # THEN the agent loads from the stage all the same
        assert shown.returncode == 0, shown.stderr
        assert "victim" in shown.stdout
    finally:
        process.kill()
        process.wait()
