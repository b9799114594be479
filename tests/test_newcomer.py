"""What a new user meets in the first twenty minutes (issue 9), against real processes: tasks
named by name, awaited and created children told apart, several loops, what an attach could
not see, a cancel pending on a blocked loop, a process without asyncio, and detach."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.helpers import REPO, Target, run_cli, wait_for

needs_attach = pytest.mark.skipif(
    shutil.which("gdb") is None and sys.version_info < (3, 14),
    reason="attaching to Python 3.11-3.13 needs gdb (apt-get install gdb)",
)


def snapshot(pid: int, *extra: str) -> dict[str, Any]:
    result = run_cli("dump", *extra, str(pid), timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def tasks_by_name(pid: int) -> dict[str, list[dict[str, Any]]]:
    named: dict[str, list[dict[str, Any]]] = {}
    for task in snapshot(pid)["tasks"]:
        named.setdefault(task["name"], []).append(task)
    return named


def notes(target: Target) -> str:
    path = target.file(f"notes-{target.pid}")
    return path.read_text() if path.exists() else ""


# --- 3. tasks addressed by name ------------------------------------------------------------


@needs_attach
def test_tasks_are_addressed_by_name_after_an_attach(start: Any) -> None:
    # GIVEN a program that never loaded taskscope (ids come from the attach)
    target = start("newcomer.py", agent=False).wait_ready()
    named = tasks_by_name(target.pid)
    transfer_a = named["transfer-a"][0]
    # WHEN a task is named by its name THEN that very task is shown (its id on the title line)
    stack = run_cli("stack", str(target.pid), "transfer-a")
    assert stack.returncode == 0, stack.stderr
    assert stack.stdout.splitlines()[0].startswith(f"task {transfer_a['id']} transfer-a ")
    assert "await asyncio.sleep(3600)" in stack.stdout
    # AND asyncio's default names, `Task-N`, name only the task called so, never the id N
    defaults = {
        int(name[5:]): tasks[0] for name, tasks in named.items() if re.fullmatch(r"Task-\d+", name)
    }
    assert len(defaults) >= 3
    by_id = {task["id"]: task for tasks in named.values() for task in tasks}
    for number, task in defaults.items():
        result = run_cli("stack", str(target.pid), f"Task-{number}")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"task {task['id']} Task-{number} ")
        # AND the bare number N names Task-N too: when the id N is another task, the user is
        # shown both and asked to choose (exit status 2), nothing is done
        bare = run_cli("cancel", str(target.pid), str(number))
        other = by_id.get(str(number))
        if other is None or other["id"] == task["id"]:
            assert bare.returncode == 0, bare.stderr
            assert f"task {task['id']} Task-{number} " in bare.stdout
        else:
            assert bare.returncode == 2
            line = bare.stderr.strip()
            assert len(line.splitlines()) == 1
            assert f"id:{other['id']} {other['name']}" in line
            assert f"id:{task['id']} Task-{number}" in line
    # AND `id:N` is the id alone
    first = sorted(by_id.values(), key=lambda task: int(task["id"]))[0]
    by_id_only = run_cli("stack", str(target.pid), f"id:{first['id']}")
    assert by_id_only.returncode == 0
    assert by_id_only.stdout.startswith(f"task {first['id']} {first['name']} ")
    # AND two tasks of one name are listed, not guessed
    dup = run_cli("cancel", str(target.pid), "retry")
    assert dup.returncode == 2
    assert dup.stderr.count("retry (transfer(), pending)") == 2
    # AND a name nobody has says so, with the near misses
    missing = run_cli("stack", str(target.pid), "transfer")
    assert missing.returncode == 1
    assert "no task transfer in process" in missing.stderr
    assert "transfer-a" in missing.stderr and "transfer-b" in missing.stderr
    # AND a cancel by name reaches that task and no other
    cancel = run_cli("cancel", str(target.pid), "victim")
    assert cancel.returncode == 0, cancel.stderr
    wait_for(lambda: "victim cancelled" in notes(target), what="the victim's CancelledError")
    assert target.process.poll() is None
    after = tasks_by_name(target.pid)
    assert after["transfer-a"][0]["state"] == "pending"
    assert after["Task-1"][0]["state"] == "pending"


# --- 7. a process without asyncio; detach -----------------------------------------------------


def report(target: Target) -> str:
    """Ask the target what it holds (threads, modules, hooks); the line it notes."""
    before = notes(target).count("report ")
    target.file(f"report-{target.pid}").write_text("")
    wait_for(lambda: notes(target).count("report ") > before, what="the target's report")
    return notes(target).strip().splitlines()[-1]


@needs_attach
def test_a_process_without_asyncio_says_so_and_keeps_no_agent(start: Any, socket_dir: str) -> None:
    # GIVEN a Python program that runs no event loop
    target = start("no_asyncio.py", agent=False).wait_ready()
    before = report(target)
    for command in ("ps", "tree", "dump"):
        # WHEN a command looks at it
        result = run_cli(command, str(target.pid), timeout=60)
        # THEN it says so in one line, with the documented exit status 3
        assert result.returncode == 3, (result.stdout, result.stderr)
        assert result.stdout == ""
        assert result.stderr.strip() == (
            f"taskscope: no event loop in process {target.pid}: it runs no asyncio (yet); "
            "the agent loaded to look was unloaded again"
        )
        # AND the agent it loaded to look is gone again: no socket, no thread, no module
        assert not os.path.exists(os.path.join(socket_dir, f"{target.pid}.sock"))
        wait_for(lambda: report(target) == before, what="the target as it was before")
    assert target.stop()[0] == 0


@needs_attach
def test_detach_stops_the_agent_and_restores_the_process(start: Any, socket_dir: str) -> None:
    # GIVEN an asyncio program that never loaded taskscope
    target = start("newcomer.py", agent=False).wait_ready()
    before = report(target)
    assert "taskscope" not in before
    snapshot(target.pid)  # loads the agent
    loaded = report(target)
    assert "taskscope-agent" in loaded and "taskscope.agent" in loaded
    assert "hooks=[True, 'taskscope.agent.tracker', 'taskscope.agent.tracker', 1]" in loaded
    # WHEN the user detaches
    result = run_cli("detach", str(target.pid))
    # THEN the agent stops: socket gone, hooks and callbacks undone, threads and modules gone
    assert result.returncode == 0, result.stderr
    assert f"agent stopped in process {target.pid}" in result.stdout
    assert not os.path.exists(os.path.join(socket_dir, f"{target.pid}.sock"))
    wait_for(lambda: report(target) == before, what="the target as it was before the attach")
    # AND --no-inject finds no agent, while the program runs on
    refused = run_cli("ps", "--no-inject", str(target.pid))
    assert refused.returncode == 1
    assert f"process {target.pid} has no taskscope agent" in refused.stderr
    assert target.process.poll() is None
    # AND detaching again says there is nothing to detach; a new attach works
    again = run_cli("detach", str(target.pid))
    assert again.returncode == 1 and "has no taskscope agent" in again.stderr
    assert any(task["name"] == "victim" for task in snapshot(target.pid)["tasks"])
    assert target.stop()[0] == 0


# --- 12. the true reason on a process whose memory is closed even to root ------------------


def run_cli_without_ptrace(*args: str) -> subprocess.CompletedProcess[str]:
    """`taskscope` as root without CAP_SYS_PTRACE: processes holding privileges it lacks (as a
    container's pid 1 may) have their memory map closed to it, as to an ordinary user."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        ["setpriv", "--bounding-set=-sys_ptrace", "--", sys.executable, "-m", "taskscope", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_a_closed_process_that_is_not_python_is_said_to_be_not_python(start: Any) -> None:
    # GIVEN a program that is not Python, whose memory map root-without-ptrace may not read
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        closed_map = subprocess.run(
            ["setpriv", "--bounding-set=-sys_ptrace", "--", "readlink", f"/proc/{sleeper.pid}/exe"],
            capture_output=True,
        )
        assert closed_map.returncode != 0
        # WHEN `ps` is pointed at it
        result = run_cli_without_ptrace("ps", str(sleeper.pid))
        # THEN it says what is true: not Python; not a ptrace permission to ask for
        assert result.returncode == 1
        line = result.stderr.strip()
        assert line.startswith(f"taskscope: process {sleeper.pid} (sleep: sleep 60) is not a ")
        assert "not a Python process" in line and "ptrace" not in line.lower()
    finally:
        sleeper.kill()
        sleeper.wait()
    # AND a Python program closed the same way still gets the permission reason
    target = start("no_asyncio.py", agent=False).wait_ready()
    closed = run_cli_without_ptrace("ps", str(target.pid))
    assert closed.returncode == 1
    assert "CAP_SYS_PTRACE" in closed.stderr and "not a Python process" not in closed.stderr
