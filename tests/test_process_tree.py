"""Process trees: `tree`, `ps`, `dump`, `cancel`, `stack`, `list` and the dashboard on the
parent of worker processes, against a real uvicorn with two workers and a real
multiprocessing pool of asyncio workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskscope.fleet import FleetSource, merge_snapshots, split_id
from tests.helpers import REPO, TARGETS, Target, program_in_own_session, run_cli, wait_for

pytest.importorskip("uvicorn", reason="the worker-tree tests need uvicorn (pip install uvicorn)")


@dataclass
class Uvicorn:
    process: subprocess.Popen[str]
    workdir: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def workers(self) -> set[int]:
        """The workers that said they are ready and still run."""
        found = set()
        for ready in self.workdir.glob("ready-worker-*"):
            pid = int(ready.name.rsplit("-", 1)[1])
            if _running(pid):
                found.add(pid)
        return found

    def request_slow(self) -> socket.socket:
        """A request to /slow, left waiting in whichever worker took it."""
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(self.workdir / "uvicorn.sock"))
        client.sendall(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        return client


def _running(pid: int) -> bool:
    from taskscope.process_facts import process_alive

    return process_alive(pid)


@pytest.fixture
def uvicorn_app(tmp_path: Path) -> Iterator[Uvicorn]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TARGETS), str(REPO), env.get("PYTHONPATH", "")])
    env["TASKSCOPE_TEST_DIR"] = str(tmp_path)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "uvicorn_app:app", "--workers", "2"),
            *("--uds", str(tmp_path / "uvicorn.sock"), "--log-level", "warning"),
            # uvicorn restarts a worker that misses its health check (5 s by default); on a
            # loaded CI machine, gdb can hold a 3.11-3.13 worker stopped that long while it
            # loads the agent, and the test would look at a worker that is gone.
            *("--timeout-worker-healthcheck", "60"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    server = Uvicorn(process, tmp_path)
    try:
        wait_for(lambda: len(server.workers()) == 2, 30, "uvicorn's two workers")
        yield server
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()


def _dump(pid: int) -> dict:  # type: ignore[type-arg]
    result = run_cli("dump", str(pid), timeout=90)
    assert result.returncode == 0, result.stderr
    snapshot: dict = json.loads(result.stdout)  # type: ignore[type-arg]
    return snapshot


def test_tree_on_a_uvicorn_master_shows_both_workers_tasks_labelled_by_pid(
    uvicorn_app: Uvicorn,
) -> None:
    # GIVEN uvicorn with two workers, one of them serving a slow request
    first, second = sorted(uvicorn_app.workers())
    waiting = uvicorn_app.request_slow()
    try:
        wait_for(lambda: list(uvicorn_app.workdir.glob("slow-*")), 20, "the slow request")
        # WHEN tree is asked of the master, which runs no event loop itself
        result = run_cli("tree", str(uvicorn_app.pid), timeout=90)
    finally:
        waiting.close()
    # THEN both workers' tasks are there, under loops labelled by their pid
    assert result.returncode == 0, result.stderr
    for worker in (first, second):
        assert f"── loop pid {worker} MainThread" in result.stdout
        assert f"heartbeat-{worker}" in result.stdout
    assert f"pid {uvicorn_app.pid} " in result.stdout.splitlines()[0]
    slow_pid = int(next(uvicorn_app.workdir.glob("slow-*")).name.split("-")[1])
    stack_owner = _dump(uvicorn_app.pid)
    slow = [
        task
        for task in stack_owner["tasks"]
        if any(frame["function"] == "slow_answer" for frame in task["stack"])
    ]
    assert [task["pid"] for task in slow] == [slow_pid]


def test_dump_of_a_master_keeps_schema_1_with_prefixed_ids_and_the_processes(
    uvicorn_app: Uvicorn,
) -> None:
    workers = uvicorn_app.workers()
    snapshot = _dump(uvicorn_app.pid)
    assert snapshot["schema"] == 1
    assert snapshot["pid"] == uvicorn_app.pid
    assert {process["pid"] for process in snapshot["processes"]} == workers
    assert {process["role"] for process in snapshot["processes"]} == {"worker"}
    assert {loop["pid"] for loop in snapshot["loops"]} == workers
    for task in snapshot["tasks"]:
        assert task["id"].startswith(f"{task['pid']}:")
        assert task["loop"].startswith(f"{task['pid']}:")
    names = {task["name"]: task["pid"] for task in snapshot["tasks"]}
    assert {names[f"heartbeat-{worker}"] for worker in workers} == workers


def test_cancel_by_a_prefixed_id_reaches_the_right_worker(uvicorn_app: Uvicorn) -> None:
    # GIVEN the heartbeat task of the second worker, by its fleet-wide id
    first, second = sorted(uvicorn_app.workers())
    before = _dump(uvicorn_app.pid)
    target = next(task for task in before["tasks"] if task["name"] == f"heartbeat-{second}")
    other = next(task for task in before["tasks"] if task["name"] == f"heartbeat-{first}")
    assert split_id(target["id"]) is not None
    # WHEN it is cancelled through the master
    result = run_cli("cancel", str(uvicorn_app.pid), target["id"], timeout=60)
    assert result.returncode == 0, result.stderr
    assert "cancel requested" in result.stdout

    # THEN that worker's heartbeat is cancelled and the other's still runs
    def states() -> dict[str, str]:
        tasks = _dump(uvicorn_app.pid)["tasks"]
        return {task["name"]: task["state"] for task in tasks if task["name"].startswith("heart")}

    after = wait_for(lambda: (s := states()).get(f"heartbeat-{second}") == "cancelled" and s, 20)
    assert after[f"heartbeat-{first}"] == "pending"
    # AND stack by a prefixed id reads the other worker's task (each worker numbers its tasks
    # in the order it met them, so the two heartbeats need not share a number)
    assert other["id"].startswith(f"{first}:")
    stack = run_cli("stack", str(uvicorn_app.pid), other["id"])
    assert stack.returncode == 0, stack.stderr
    assert f"heartbeat-{first}" in stack.stdout and "uvicorn_app.py" in stack.stdout


def test_a_prefixed_id_of_a_process_outside_the_tree_is_refused(uvicorn_app: Uvicorn) -> None:
    result = run_cli("cancel", str(uvicorn_app.pid), "1:3", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"taskscope: no task 1:3 in process {uvicorn_app.pid} "
        f"(see `taskscope ps {uvicorn_app.pid}`)"
    )


def test_list_shows_the_workers_under_their_master(uvicorn_app: Uvicorn) -> None:
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    master = next(i for i, line in enumerate(lines) if line.split()[0] == str(uvicorn_app.pid))
    under = lines[master + 1 : master + 4]
    shown = {int(line.split()[0]) for line in under if "└ " in line}
    assert uvicorn_app.workers() <= shown


def test_the_dashboard_picks_up_a_worker_restarted_by_uvicorn(uvicorn_app: Uvicorn) -> None:
    from taskscope.ui.app import TaskscopeApp
    from taskscope.ui.help_screen import HelpScreen
    from tests.ui.harness import SIZE, until

    first, second = sorted(uvicorn_app.workers())
    source = FleetSource(uvicorn_app.pid, timeout=60, follow=True)
    app = TaskscopeApp(source, interval=0.2)

    def names() -> set[str]:
        return {task.name for task in app.model.tasks.values()}

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(
                pilot,
                lambda: {f"heartbeat-{first}", f"heartbeat-{second}"} <= names(),
                within=60,
                what="both workers' tasks",
            )
            # WHEN a worker is killed and uvicorn starts another in its place
            os.kill(second, signal.SIGKILL)
            # uvicorn's supervisor replaces a dead worker after pinging each live one, each
            # ping allowed the fixture's 60 s health check: a worker gdb holds stopped (the
            # dashboard attaches to every new worker) delays it. Once, on CI, over 60 s.
            await until(
                pilot, lambda: uvicorn_app.workers() - {first, second}, 150, what="a new worker"
            )
            (replacement,) = uvicorn_app.workers() - {first, second}
            # THEN the new worker's tasks show up, and the dead one's are gone
            await until(
                pilot,
                lambda: (
                    f"heartbeat-{replacement}" in names() and f"heartbeat-{second}" not in names()
                ),
                within=60,
                what="the restarted worker's tasks",
            )
            assert f"heartbeat-{first}" in names()
            assert any(
                loop.label == f"pid {replacement} MainThread" for loop in app.model.loops.values()
            )

            # AND w shows one worker's tasks, then the next's, then all of them again
            def shown_pids() -> set[int]:
                return {int(task_id.split(":")[0]) for task_id in app.task_tree.task_ids}

            for worker in sorted((first, replacement)):
                await pilot.press("w")
                await until(
                    pilot, lambda w=worker: shown_pids() == {w}, what=f"worker {worker} alone"
                )
                assert f"worker {worker} only" in str(app.header.render())
            await pilot.press("w")
            await until(
                pilot, lambda: shown_pids() == {first, replacement}, what="all workers again"
            )
            # AND the help lists w, as it does not for one process
            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help")
            assert "w" in dict(app.screen.keys)  # type: ignore[attr-defined]
            await pilot.press("escape")
            app.exit()

    try:
        asyncio.run(main())
    finally:
        source.close()


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_tree_on_a_multiprocessing_pool_of_asyncio_workers(start: object, method: str) -> None:
    # forkserver is the default from 3.14 on Linux: its workers are the fork server's children,
    # with its command line, where the fork server itself runs no asyncio
    target: Target = start("asyncio_pool.py", method, agent=False).wait_ready(30)  # type: ignore[operator]
    workers = {int(path.name.rsplit("-", 1)[1]) for path in target.workdir.glob("ready-worker-*")}
    assert len(workers) == 2
    result = run_cli("tree", str(target.pid), timeout=90)
    assert result.returncode == 0, result.stderr
    for worker in workers:
        assert f"── loop pid {worker} MainThread" in result.stdout
        assert f"pool-job-{worker}" in result.stdout
    # `list` names multiprocessing's processes for what they are, not by their `-c` scripts
    listed = run_cli("list")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    role = "forked by the fork server" if method == "forkserver" else "spawned"
    for worker in workers:
        assert lines[str(worker)].endswith(f": multiprocessing worker ({role})"), listed.stdout
    target.stop()


def test_a_process_pool_worker_forked_from_a_running_loop_is_not_shown_as_one(
    start: object,
) -> None:
    # GIVEN an asyncio program whose process pool forked a worker while its loop ran: the
    # worker holds a copy of the loop and its tasks, which never runs
    target: Target = start("process_pool.py", agent=False).wait_ready(30)  # type: ignore[operator]
    [worker] = [int(path.name.split("-")[1]) for path in target.workdir.glob("job-*")]
    # WHEN ps is asked of the program
    result = run_cli("ps", str(target.pid), timeout=90)
    # THEN its own loop and tasks are shown, and no copy in the worker (a loop said BLOCKED,
    # the program's tasks twice)
    assert result.returncode == 0, result.stderr
    assert f"pid {worker}" not in result.stdout, result.stdout
    assert f"{worker}:" not in result.stdout, result.stdout
    assert "BLOCKED" not in result.stdout, result.stdout
    assert sum(" main()" in line for line in result.stdout.splitlines()) == 1, result.stdout
    target.stop()


def test_a_parent_whose_python_children_run_no_asyncio_still_says_no_event_loop(
    tmp_path: Path,
) -> None:
    # GIVEN a Python parent with a Python child, neither running asyncio
    ready = tmp_path / "ready"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(ready)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n"
    )
    command = [sys.executable, "-c", code]
    with program_in_own_session(command, ready, "the parent and its child") as parent:
        # WHEN tree is asked of the parent
        result = run_cli("tree", str(parent), timeout=90)
    # THEN it is the same "no event loop" as for one process, exit status 3
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(f"taskscope: no event loop in process {parent}")


def test_a_shell_parent_leads_to_its_python_child_without_a_line_about_itself(
    tmp_path: Path,
) -> None:
    # GIVEN a shell (no Python) whose child runs asyncio, and another whose child does not
    ready = tmp_path / "ready"
    program = (
        "import asyncio\n"
        "async def main():\n"
        "    task = asyncio.create_task(asyncio.sleep(120), name='child-task')\n"
        f"    open({str(ready)!r}, 'w').write('ready')\n"
        "    await task\n"
        "asyncio.run(main())\n"
    )
    plain = "import time; time.sleep(120)"
    results = []
    for code, wait in ((program, True), (plain, False)):
        shell = subprocess.Popen(
            ["sh", "-c", f'"{sys.executable}" -c "$0"; true', code], start_new_session=True
        )
        try:
            if wait:
                wait_for(ready.exists, 20, "the shell's asyncio child")
            else:
                wait_for(lambda pid=shell.pid: len(_children(pid)) == 1, 20, "the shell's child")
            # WHEN tree is asked of the shell
            results.append((shell.pid, run_cli("tree", str(shell.pid), timeout=90)))
        finally:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
    # THEN the child's tasks are shown, as the child's own (its pid in the header, plain
    # ids), and one line says which process was looked at
    (shell_pid, shown), (other_pid, none) = results
    assert shown.returncode == 0, shown.stderr
    child = shown.stdout.split()[1]
    assert child != str(shell_pid) and "child-task" in shown.stdout
    # no worker-prefixed ids (PID:ID; a time of day, 09:55:59, is not one)
    assert not re.search(r"(?<![\d:])\d+:\d+\s", shown.stdout), shown.stdout
    assert shown.stderr == (
        f"taskscope: process {shell_pid} (sh) is not Python; looking at the Python program it "
        f"runs, process {child}\n"
    )
    # AND a child without asyncio gets that line, then the one "no event loop" line about the
    # child, exit status 3
    assert none.returncode == 3, none.stderr
    note, no_loop = none.stderr.splitlines()
    assert note.startswith(f"taskscope: process {other_pid} (sh) is not Python; looking at ")
    assert no_loop.startswith("taskscope: no event loop in process "), no_loop


def test_a_launcher_of_several_python_programs_is_refused_naming_them(tmp_path: Path) -> None:
    # GIVEN a shell running two Python programs side by side (as init, or a script's jobs)
    code = "import time; time.sleep(120)"
    shell = subprocess.Popen(
        ["sh", "-c", f'"{sys.executable}" -c "$0" & "{sys.executable}" -c "$0"; wait', code],
        start_new_session=True,
    )
    try:
        wait_for(lambda: len(_children(shell.pid)) == 2, 20, "the shell's two programs")
        programs = sorted(_children(shell.pid))
        # WHEN tree is asked of the shell
        refused = run_cli("tree", str(shell.pid), timeout=90)
        # THEN one line names both programs and says what to do, and no agent was loaded
        assert refused.returncode == 1, refused.stdout
        line = refused.stderr.strip()
        assert len(line.splitlines()) == 1, line
        assert line.startswith(
            f"taskscope: process {shell.pid} (sh) is not Python and runs 2 Python programs: "
        ), line
        assert all(f"{pid} (" in line for pid in programs), line
        assert line.endswith("pass the pid of one (`taskscope list` shows them)"), line
        for pid in programs:  # an agent would have started its thread
            assert len(list(Path(f"/proc/{pid}/task").iterdir())) == 1, pid
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()


def test_taskscope_asked_about_the_shell_that_runs_it_does_not_look_at_itself() -> None:
    # GIVEN a shell whose only Python child is the taskscope command asked about that shell
    # (`taskscope tree $$`, as a user types it in a script)
    command = f'"{sys.executable}" -m taskscope tree $$; exit $?'
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.monotonic()
    done = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, env=env, timeout=90
    )
    # THEN it does not try to attach to itself (it said "can't attach to its own process"
    # before the answer): the shell is no Python process and runs none, in one line
    assert done.returncode != 0
    assert done.stderr.startswith("taskscope: process "), done.stderr
    assert "is not a Python process" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "own process" not in done.stderr
    assert time.monotonic() - started < 8, "it waited for something"


def _children(pid: int) -> list[str]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return path.read_text().split() if path.exists() else []


def test_merge_keeps_ids_unique_and_references_prefixed() -> None:
    def one(pid: int) -> dict:  # type: ignore[type-arg]
        return {
            "schema": 1,
            "pid": pid,
            "python": "3.12.1",
            "taken_at": 1.0,
            "history_limit": 10,
            "cycles": [["1", "2"]],
            "loops": [
                {
                    "id": "L1",
                    "main_task": "1",
                    "thread_name": "MainThread",
                    "stalls": [
                        {"task": "2", "task_name": "b", "callback": None},
                        {"task": None, "task_name": None, "callback": "tick"},
                    ],
                }
            ],
            "tasks": [
                {
                    "id": "1",
                    "loop": "L1",
                    "awaited_by": [],
                    "parent": None,
                    "awaiting": {"kind": "task", "text": "", "tasks": ["2"]},
                },
                {"id": "2", "loop": "L1", "awaited_by": ["1"], "parent": "1", "awaiting": None},
            ],
        }

    merged = merge_snapshots(10, [(11, one(11)), (12, one(12))])  # type: ignore[list-item]
    ids = [task["id"] for task in merged["tasks"]]
    assert ids == ["11:1", "11:2", "12:1", "12:2"]
    assert merged["tasks"][0]["awaiting"]["tasks"] == ["11:2"]  # type: ignore[index]
    assert merged["tasks"][3]["awaited_by"] == ["12:1"]
    assert merged["tasks"][3]["parent"] == "12:1"
    assert merged["loops"][1]["main_task"] == "12:1"
    assert [stall["task"] for stall in merged["loops"][1]["stalls"]] == ["12:2", None]
    assert merged["cycles"] == [["11:1", "11:2"], ["12:1", "12:2"]]
    assert merged["pid"] == 10


def test_cancel_by_name_on_the_master_finds_the_worker(uvicorn_app: Uvicorn) -> None:
    first, second = sorted(uvicorn_app.workers())
    result = run_cli("cancel", str(uvicorn_app.pid), f"heartbeat-{first}", timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"task {first}:" in result.stdout and f"heartbeat-{first}" in result.stdout
    assert f"taskscope ps {uvicorn_app.pid}" in result.stdout

    def states() -> dict[str, str]:
        tasks = _dump(uvicorn_app.pid)["tasks"]
        return {task["name"]: task["state"] for task in tasks if task["name"].startswith("heart")}

    after = wait_for(lambda: (s := states()).get(f"heartbeat-{first}") == "cancelled" and s, 20)
    assert after[f"heartbeat-{second}"] == "pending"
    # A name that several workers have is refused, listing their fleet-wide ids
    both = run_cli("stack", str(uvicorn_app.pid), "Task-1", timeout=60)
    assert both.returncode == 2
    named = [task["id"] for task in _dump(uvicorn_app.pid)["tasks"] if task["name"] == "Task-1"]
    assert {int(task_id.split(":")[0]) for task_id in named} == {first, second}
    for task_id in named:
        assert f"{task_id} Task-1 (" in both.stderr


def test_a_worker_that_refuses_is_one_line_and_the_others_are_shown(
    uvicorn_app: Uvicorn,
) -> None:
    # GIVEN an agent in one worker only, and --no-inject for the others
    first, second = sorted(uvicorn_app.workers())
    assert run_cli("ps", str(first), timeout=60).returncode == 0
    # WHEN tree is asked of the master
    result = run_cli("tree", "--no-inject", str(uvicorn_app.pid), timeout=60)
    # THEN the worker with an agent is shown, and each process without one is one line
    assert result.returncode == 0, result.stderr
    assert f"heartbeat-{first}" in result.stdout
    assert f"heartbeat-{second}" not in result.stdout
    lines = sorted(result.stderr.splitlines())
    assert len(lines) == 2, result.stderr
    for pid in (uvicorn_app.pid, second):
        found = [text for text in lines if text.startswith(f"taskscope: process {pid} ")]
        assert len(found) == 1, result.stderr
        line = found[0]
        assert line.startswith(f"taskscope: process {pid} has no taskscope agent: run ")


@contextlib.contextmanager
def program_with_a_python_helper(tmp_path: Path) -> Iterator[int]:
    """An asyncio program (one task, `alone-task`) that runs a Python helper process with no
    asyncio in it: its pid, once both run; both killed after."""
    ready = tmp_path / "ready"
    code = (
        "import asyncio, subprocess, sys\n"
        "async def main():\n"
        "    helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "    task = asyncio.create_task(asyncio.sleep(120), name='alone-task')\n"
        f"    open({str(ready)!r}, 'w').write(str(helper.pid))\n"
        "    await task\n"
        "asyncio.run(main())\n"
    )
    command = [sys.executable, "-c", code]
    with program_in_own_session(command, ready, "the program and its helper") as pid:
        yield pid


def test_an_asyncio_program_with_a_python_helper_is_shown_as_one_process(
    tmp_path: Path,
) -> None:
    # GIVEN an asyncio program that runs a Python helper process (no asyncio in it)
    with program_with_a_python_helper(tmp_path) as pid:
        result = run_cli("dump", str(pid), timeout=90)
        tree = run_cli("tree", str(pid), timeout=90)
    # THEN the snapshot is the program's own: plain ids, no processes list, no pid labels
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    assert "processes" not in snapshot
    assert all(task["id"].isdigit() and "pid" not in task for task in snapshot["tasks"])
    assert "alone-task" in {task["name"] for task in snapshot["tasks"]}
    assert tree.returncode == 0, tree.stderr
    assert "loop MainThread" in tree.stdout.splitlines()[0]


def test_detach_of_a_python_parent_stops_its_own_agent(tmp_path: Path) -> None:
    # GIVEN an asyncio program with a Python child (a helper), its agent loaded by a look
    with program_with_a_python_helper(tmp_path) as pid:
        assert run_cli("tree", str(pid), timeout=90).returncode == 0
        # WHEN it is detached
        detached = run_cli("detach", str(pid))
        again = run_cli("tree", "--no-inject", str(pid))
    # THEN its agent stops (not "detach each process on its own", asked of that very one)
    assert detached.returncode == 0, detached.stderr
    assert detached.stdout.startswith(f"agent stopped in process {pid}")
    assert f"process {pid} has no taskscope agent" in again.stderr
    if sys.version_info >= (3, 14):  # where a read-only look stands in for the agent
        assert f"reading process {pid}'s memory instead (read-only)" in again.stderr
        assert again.returncode == 0, again.stderr
    else:
        assert again.returncode != 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_attach_on_a_uvicorn_master_in_a_terminal_shows_both_workers(
    uvicorn_app: Uvicorn,
) -> None:
    from tests.ui.test_tmux_e2e import Terminal

    first, second = sorted(uvicorn_app.workers())
    terminal = Terminal("fleet")
    env = {"PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    env["TASKSCOPE_SOCKET_DIR"] = os.environ["TASKSCOPE_SOCKET_DIR"]
    try:
        terminal.start([sys.executable, "-m", "taskscope", "attach", str(uvicorn_app.pid)], env)
        # The tree shows both workers' loops and tasks
        wait_for(
            lambda: all(
                f"heartbeat-{pid}" in terminal.screen()
                and f"pid {pid} MainThread" in terminal.screen()
                for pid in (first, second)
            ),
            60,
            "both workers on screen",
        )
        terminal.keys("q")
        wait_for(lambda: not terminal.alive(), 20, "the dashboard to quit")
    finally:
        terminal.kill()


def test_merge_prefixes_a_locks_holders_so_a_deadlock_across_the_look_is_found() -> None:
    # GIVEN a worker whose two tasks hold each other's lock
    def lock_wait(holder: str) -> dict:  # type: ignore[type-arg]
        return {
            "kind": "lock",
            "tasks": [],
            "object": {"type": "Lock", "id": f"0x{holder}", "name": "l", "holders": [holder]},
        }

    def record(task_id: str, holder: str) -> dict:  # type: ignore[type-arg]
        return {
            "id": task_id,
            "loop": "L1",
            "name": f"t{task_id}",
            "state": "pending",
            "coro": "c",
            "stack": [],
            "awaited_by": [],
            "parent": None,
            "created_at": None,
            "finished_at": None,
            "awaiting": lock_wait(holder),
        }

    worker = {
        "schema": 1,
        "pid": 11,
        "python": "3.12.1",
        "taken_at": 1.0,
        "history_limit": 10,
        "cycles": [],
        "loops": [{"id": "L1", "thread_name": "MainThread"}],
        "tasks": [record("1", "2"), record("2", "1")],
    }
    # WHEN merged with its parent's look
    merged = merge_snapshots(10, [(11, worker)])  # type: ignore[list-item]
    # THEN the holders are the merged ids, and the lints find the deadlock
    from taskscope.lints import find_warnings
    from taskscope.model import TaskModel

    holders = [task["awaiting"]["object"]["holders"] for task in merged["tasks"]]  # type: ignore[index]
    assert holders == [["11:2"], ["11:1"]]
    findings = find_warnings(TaskModel.from_snapshot(merged))
    assert [(f.kind, f.tasks) for f in findings] == [("lock_deadlock", ("11:1", "11:2"))]
