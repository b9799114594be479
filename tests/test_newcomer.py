"""What a new user meets in the first twenty minutes (issue 9), against real processes: tasks
named by name, awaited and created children told apart, several loops, what an attach could
not see, a cancel pending on a blocked loop, a process without asyncio, and detach."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.helpers import REPO, Target, notes, run_cli, wait_for, write_package

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
    # AND a coroutine's name, as `ps` shows it under CORO, offers the tasks running it
    by_coro = run_cli("cancel", str(target.pid), "flush_loop")
    assert by_coro.returncode == 1
    assert "did you mean" in by_coro.stderr and "flusher (flush_loop(), pending)" in by_coro.stderr
    # AND a cancel by name reaches that task and no other
    cancel = run_cli("cancel", str(target.pid), "victim")
    assert cancel.returncode == 0, cancel.stderr
    wait_for(lambda: "victim cancelled" in notes(target), what="the victim's CancelledError")
    assert target.process.poll() is None
    after = tasks_by_name(target.pid)
    assert after["transfer-a"][0]["state"] == "pending"
    assert after["Task-1"][0]["state"] == "pending"


def clock(timestamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


def tree_lines(pid: int, *extra: str) -> list[str]:
    result = run_cli("tree", *extra, str(pid), timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def line_of(lines: list[str], name: str) -> str:
    """The tree line of the task called `name` (its name after the branch glyphs)."""
    return next(line for line in lines if re.match(rf"[│├└─┄ ]*{re.escape(name)}\s", line))


def row_of(table: list[str], name: str) -> str:
    """The `ps` row of the task called `name`."""
    return next(line for line in table if line[:1].isdigit() and name in line.split()[1:5])


# --- 2. awaited and created, told apart -----------------------------------------------------


def test_tree_tells_a_created_child_from_an_awaited_one(start: Any) -> None:
    # GIVEN a program run with the agent from its start: creators are known
    target = start("newcomer.py").wait_ready()
    lines = tree_lines(target.pid)
    # THEN the task main awaits hangs on a solid branch, the one it only created (fire and
    # forget) on a dashed one, and a legend says which is which
    assert re.match(r"[├└]─ victim ", line_of(lines, "victim"))
    assert re.match(r"[├└]┄ flusher ", line_of(lines, "flusher"))
    assert "legend: ├─ awaited by   ├┄ created by, nobody awaits it" in lines
    assert not any("made before the agent came" in line for line in lines)


@needs_attach
def test_tree_after_an_attach_says_creators_are_unknown(start: Any) -> None:
    # GIVEN the same program, attached to: the agent never saw its tasks being created
    target = start("newcomer.py", agent=False).wait_ready()
    lines = tree_lines(target.pid)
    # THEN the awaited child still hangs under its waiter, the others are roots, and the tree
    # says why: their creators are unknown
    assert re.match(r"[├└]─ victim ", line_of(lines, "victim"))
    assert line_of(lines, "flusher").startswith("flusher ")
    since = snapshot(target.pid)["history_since"]
    note = next(line for line in lines if "made before the agent came" in line)
    # every task shown (14), the awaited victim too: not only the roots
    assert note.startswith(f"14 tasks made before the agent came at {clock(since)}: ")
    assert "who created them is unknown (a task nobody awaits is shown as a root)" in note


def test_tree_lists_tasks_older_than_the_agent_by_name_in_natural_order(start: Any) -> None:
    # GIVEN twelve workers made in a scrambled order before the agent came: it saw no creation
    # time, and numbered them in the order it met them
    target = start("older_than_agent.py", agent=False).wait_ready()
    lines = tree_lines(target.pid)
    # THEN the tree's roots come in their names' natural order (worker-2 before worker-10)
    workers = [line.split()[0] for line in lines if line.startswith("worker-")]
    assert workers == [f"worker-{n}" for n in range(1, 13)], lines


def test_with_creations_untracked_the_tree_says_so_not_that_tasks_predate_the_agent(
    start: Any,
) -> None:
    # GIVEN the agent from the start, creations not tracked (track_tasks=False)
    target = start("newcomer.py", env={"TASKSCOPE_TRACK": "0"}).wait_ready()
    lines = tree_lines(target.pid)
    # THEN no task is said to predate the agent; the tree says creators are not tracked
    assert not any("made before the agent came" in line for line in lines)
    assert any(line.startswith("creations are not tracked (track_tasks off)") for line in lines)
    assert re.search(r" ≥\d+(\.\d)?m?s$", line_of(lines, "flusher"))


# --- 4. several loops -----------------------------------------------------------------------


def test_ps_and_tree_say_which_loop_a_task_runs_on(start: Any) -> None:
    # GIVEN two loops, the main one and one in a thread named side-loop
    target = start("newcomer.py", "--thread").wait_ready()
    # THEN ps has a LOOP column naming each task's loop
    ps = run_cli("ps", str(target.pid))
    assert ps.returncode == 0, ps.stderr
    table = ps.stdout.splitlines()
    heading = next(line for line in table if line.startswith("ID"))
    assert heading.split()[:3] == ["ID", "LOOP", "STATE"]
    assert row_of(table, "side-worker").split()[1] == "side-loop"
    assert row_of(table, "victim").split()[1] == "MainThread"
    # AND tree groups the tasks under a title per loop
    lines = tree_lines(target.pid)
    main_title = next(i for i, line in enumerate(lines) if line.startswith("── loop MainThread"))
    side_title = next(i for i, line in enumerate(lines) if line.startswith("── loop side-loop"))
    victim = lines.index(line_of(lines, "victim"))
    worker = lines.index(line_of(lines, "side-worker"))
    assert main_title < victim < side_title < worker
    assert "· 2 pending ──" in lines[side_title]


# --- 5. what an attach could not see --------------------------------------------------------


@needs_attach
def test_after_an_attach_history_and_ages_say_what_the_agent_could_not_see(start: Any) -> None:
    # GIVEN a program whose early tasks finished before the attach
    target = start("newcomer.py", agent=False).wait_ready()
    dumped = snapshot(target.pid)
    since = dumped["history_since"]
    assert all(task["created_at"] is None for task in dumped["tasks"])
    assert all(task["first_seen_at"] >= since for task in dumped["tasks"])
    # WHEN a task finishes after the attach
    assert run_cli("cancel", str(target.pid), "victim").returncode == 0
    wait_for(lambda: "victim cancelled" in notes(target), what="the victim's CancelledError")
    lines = tree_lines(target.pid, "-a")
    # THEN the history says from when it counts, and ages are lower bounds, not `?`
    assert lines[-1].startswith(
        f"finished since the agent started at {clock(since)}: 0 done · 1 cancelled · 0 failed"
    )
    assert re.search(r" ≥\d+(\.\d)?m?s$", line_of(lines, "transfer-a"))
    assert re.search(r" ≥\d+(\.\d)?m?s$", line_of(lines, "victim"))
    ps = run_cli("ps", "-a", str(target.pid)).stdout
    assert "?" not in "".join(line.split()[4] for line in ps.splitlines()[2:] if line[:1].isdigit())
    assert "≥: an age counted from the agent's first look" in ps


@needs_attach
def test_ps_of_a_loop_with_no_task_pending_says_so_and_what_is_known(start: Any) -> None:
    # GIVEN a loop whose tasks all finished before the attach (one failed), running on
    # callbacks alone
    target = start("idle_loop.py", agent=False).wait_ready()
    since = snapshot(target.pid)["history_since"]
    # THEN `ps` and `ps -a` say that no task is pending, under the table's head, and that
    # the tasks that ended before the agent came are not known
    note = (
        f"no task is pending, and none finished since the agent came at {clock(since)} "
        "(tasks that ended before are not known)"
    )
    for extra in ((), ("-a",)):
        listed = run_cli("ps", *extra, str(target.pid)).stdout.splitlines()
        # (a loaded machine may have kept the agent's start-up from the GIL: a line says so)
        lines = [line for line in listed if not line.startswith("the agent ")]
        assert lines[1].split() == ["ID", "STATE", "NAME", "CORO", "AGE", "AWAITING"]
        assert lines[2:] == [note]


def test_with_the_agent_from_the_start_history_and_ages_are_whole(start: Any) -> None:
    target = start("newcomer.py").wait_ready()
    assert "history_since" not in snapshot(target.pid)
    lines = tree_lines(target.pid, "-a")
    assert lines[-1].startswith("finished: 3 done · 1 cancelled · 1 failed")
    assert "≥" not in "\n".join(lines)


# --- 6. a cancel on a blocked loop, overdue timers ------------------------------------------


def test_a_cancel_waiting_for_a_blocked_loop_shows_until_it_takes_effect(start: Any) -> None:
    # GIVEN a program whose loop blocks itself for a few seconds
    target = start("newcomer.py").wait_ready()
    target.file(f"block-{target.pid}").write_text("6")
    wait_for(lambda: "blocking" in notes(target), what="the loop to block")
    # WHEN the user cancels a task meanwhile
    assert run_cli("cancel", str(target.pid), "victim").returncode == 0
    # THEN ps says the cancel is requested, and how long ago; the snapshot has the fact
    victim = tasks_by_name(target.pid)["victim"][0]
    assert victim["state"] == "pending" and victim["cancel_requested_at"] > 0
    ps = run_cli("ps", str(target.pid)).stdout
    assert re.search(r"pending, cancel requested \d+\.\d s ago  victim ", ps)
    # AND a ticker whose 0.2 s sleep ends while the loop is blocked reads overdue
    wait_for(
        lambda: re.search(
            r"ticker .* sleep, overdue \d+\.\d s", run_cli("ps", str(target.pid)).stdout
        ),
        timeout=5,
        what="the ticker's timer to be overdue",
    )
    tree = "\n".join(tree_lines(target.pid))
    assert re.search(r"victim .*· cancel requested \d+\.\d s ago", tree)
    assert "notes: unblocked" not in notes(target)  # all of it seen while blocked
    # AND once the loop runs again, the cancel takes effect and the words go
    wait_for(lambda: "victim cancelled" in notes(target), timeout=30, what="the cancel")
    assert "unblocked" in notes(target)
    after = tasks_by_name(target.pid)
    assert after["victim"][0]["state"] == "cancelled"
    assert "cancel requested" not in run_cli("ps", "-a", str(target.pid)).stdout
    assert "overdue" not in run_cli("ps", str(target.pid)).stdout


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
    assert "hooks=[True, 'taskscope.agent.loops', 'taskscope.agent.loops', 1]" in loaded
    # WHEN the user detaches
    result = run_cli("detach", str(target.pid))
    # THEN the agent stops: socket gone, hooks and callbacks undone, threads and modules gone
    assert result.returncode == 0, result.stderr
    assert f"agent stopped in process {target.pid}" in result.stdout
    assert not os.path.exists(os.path.join(socket_dir, f"{target.pid}.sock"))
    wait_for(lambda: report(target) == before, what="the target as it was before the attach")
    # AND --no-inject finds no agent, while the program runs on
    refused = run_cli("ps", "--no-inject", str(target.pid))
    assert f"process {target.pid} has no taskscope agent" in refused.stderr
    # (3.14+ then reads the process's memory instead, read-only, and says so)
    read_only = "reading its memory instead (read-only)" in refused.stderr
    assert refused.returncode == (0 if read_only else 1)
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


def test_a_program_run_as_a_package_is_named_by_its_package(tmp_path: Any) -> None:
    # GIVEN `python -m jobsvc` (its argv[0] is the package's __main__.py)
    write_package(
        tmp_path,
        "jobsvc",
        "import asyncio, os, sys\n"
        "import taskscope\n"
        "async def main():\n"
        "    taskscope.install()\n"
        "    open(f'ready-{os.getpid()}', 'w').close()\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n",
    )
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    process = subprocess.Popen(
        [sys.executable, "-m", "jobsvc", "--port", "8080"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = Target(process, tmp_path, agent=True)
    try:
        target.wait_ready()
        # WHEN its tree is printed, THEN the header says how it was started, not `__main__.py`
        result = run_cli("tree", str(target.pid))
        assert result.returncode == 0, result.stderr
        first_line = result.stdout.splitlines()[0]
        assert " · -m jobsvc --port 8080 · " in first_line, first_line
    finally:
        target.kill()


# --- 8. a stopped process -----------------------------------------------------------------------


def stopped_words(pid: int) -> str:
    return (
        f"taskscope: process {pid} is stopped (a SIGSTOP, or Ctrl-Z in its terminal): nothing "
        f"runs in it, the agent included; resume it with `kill -CONT {pid}` (or `fg` in its shell)"
    )


@needs_attach
@pytest.mark.parametrize("agent", [False, True], ids=["never-attached", "agent-loaded"])
def test_a_stopped_process_is_said_stopped_and_looked_at_once_it_runs(
    start: Any, agent: bool
) -> None:
    from taskscope.process_facts import process_state

    # GIVEN an asyncio program, stopped as Ctrl-Z or SIGSTOP stops it
    target = start("newcomer.py", agent=agent).wait_ready()
    os.kill(target.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: process_state(target.pid) == "T", what="the target stopped")
        # WHEN a command looks at it
        result = run_cli("ps", "--timeout", "30", str(target.pid), timeout=90)
        if sys.version_info >= (3, 14):
            # THEN from 3.14 on its memory is read instead, and the line says why
            assert result.returncode == 0, result.stderr
            assert result.stderr.strip() == (
                f"{stopped_words(target.pid)}; reading its memory instead (read-only)"
            )
            assert "transfer-a" in result.stdout
        else:
            # THEN it says so in one line, how to let it run, rather than that an agent did
            # not answer (or start) once the wait is over
            assert result.returncode == 1, result.stdout
            assert result.stderr.strip() == stopped_words(target.pid)
        # AND a cancel, which needs the agent, says the same
        cancel = run_cli("cancel", str(target.pid), "transfer-a")
        assert cancel.returncode == 1, cancel.stdout
        assert cancel.stderr.strip() == stopped_words(target.pid)
    finally:
        os.kill(target.pid, signal.SIGCONT)
    # WHEN it runs again THEN it is looked at through its agent, as usual
    result = run_cli("ps", str(target.pid), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "transfer-a" in result.stdout and result.stderr == ""


def test_a_process_stopped_while_a_command_waits_is_said_stopped(
    start: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from taskscope.cli.sources import _slow_note
    from taskscope.process_facts import process_state

    # GIVEN a command waiting for the agent of a program that is then stopped
    target = start("newcomer.py").wait_ready()
    note = _slow_note(argparse.Namespace(pid=target.pid, timeout=10.0, remote=None))
    os.kill(target.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: process_state(target.pid) == "T", what="the target stopped")
        # WHEN the wait outlasts a second THEN the note says it is stopped, not busy
        note(1.0)
        assert capsys.readouterr().err.strip() == (
            f"{stopped_words(target.pid)}; waiting up to 10 s"
        )
    finally:
        os.kill(target.pid, signal.SIGCONT)
    wait_for(lambda: process_state(target.pid) != "T", what="the target running")
    # AND once it runs, a slow answer is put down to the GIL or a long look again
    note(1.0)
    assert "keeps its agent from the GIL" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("gdb") is None, reason="a debugger to hold the process: gdb")
def test_a_process_held_by_a_debugger_names_the_debugger_while_a_command_waits(
    start: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from taskscope.cli.sources import _slow_note
    from taskscope.process_facts import process_state

    # GIVEN a program that gdb holds (attached, busy with a command of its own)
    target = start("newcomer.py").wait_ready()
    gdb = subprocess.Popen(
        ["gdb", "-p", str(target.pid), "-batch", "-nx", "-ex", "shell sleep 30"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: process_state(target.pid) == "t", 30, "gdb holding the target")
        # WHEN a command's wait outlasts a second THEN the note names who holds it
        _slow_note(argparse.Namespace(pid=target.pid, timeout=10.0, remote=None))(1.0)
        assert capsys.readouterr().err.strip() == (
            f"taskscope: process {target.pid} is held by gdb (pid {gdb.pid}), a debugger or "
            "tracer: nothing runs in it, the agent included; let it continue there, or detach "
            "the debugger; waiting up to 10 s"
        )
    finally:
        gdb.kill()
        gdb.wait()
        if process_state(target.pid) == "T":  # the stop of gdb's attach, left pending
            os.kill(target.pid, signal.SIGCONT)
    # AND once gdb is gone, the program runs on and answers
    result = run_cli("ps", str(target.pid), timeout=60)
    assert result.returncode == 0 and "transfer-a" in result.stdout, result.stderr
