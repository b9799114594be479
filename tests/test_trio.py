"""taskscope on programs written with trio (tests/targets/trio_app.py): one loop per
`trio.run`, every trio task with its parent, stack and what it waits for in plain words;
cancelling a task through the cancel scope that is its own, or a one-line refusal; a blocked
run said to be blocked; and attach to a trio program that never imported taskscope."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.helpers import (
    REPO,
    TARGETS,
    agent_snapshot,
    assert_lint_finds_the_transfer_deadlock,
    by_name,
    notes,
    run_cli,
    wait_for,
)

pytest.importorskip("trio", reason="these tests need trio (pip install trio)")


def _check_tasks(snap: dict[str, Any]) -> None:
    [loop] = snap["loops"]
    assert loop["type"] == "trio" and loop["thread_name"] == "MainThread", loop
    tasks = by_name(snap)
    main = tasks["__main__.main"]
    assert loop["main_task"] == main["id"], loop
    assert main["coro"] == "main" and tasks["sleeper"]["coro"] == "sleeper"
    texts = {name: task["awaiting"]["text"] for name, task in tasks.items() if task["awaiting"]}
    # THEN trio's common waits are told in plain words
    assert texts["__main__.main"] == "nursery (14 tasks)", texts
    assert texts["sleeper"].startswith("sleep, ") and texts["sleeper"].endswith(" s left")
    assert 3000 < tasks["sleeper"]["awaiting"]["seconds_left"] <= 3600, tasks["sleeper"]
    assert texts["holder"] == texts["child"] == "sleep forever", texts
    assert texts["waiter"] == "Event.wait on event (not set, 2 waiting)", texts
    assert texts["lock-waiter"] == "Lock.acquire on lock (locked, 1 waiting), held by holder"
    assert tasks["lock-waiter"]["awaiting"]["object"]["holders"] == [tasks["holder"]["id"]]
    assert texts["gate-waiter"] == "Semaphore.acquire on gate (value 0, 1 waiting)", texts
    assert texts["limit-waiter"] == (
        "CapacityLimiter.acquire on limiter (value 0, 1 waiting), held by holder"
    )
    assert tasks["limit-waiter"]["awaiting"]["object"]["holders"] == [tasks["holder"]["id"]]
    assert texts["sender"] == "MemorySendChannel.send on outbox (0 items)", texts
    assert texts["receiver"] == "MemoryReceiveChannel.receive on inbox (0 items)", texts
    assert re.fullmatch(r"wait_readable on fd \d+", texts["reader"]), texts
    port = tasks["stream-reader"]["awaiting"]["peer"].split(":")[1]
    assert re.fullmatch(rf"wait_readable on fd \d+ \(127.0.0.1:{port}\)", texts["stream-reader"])
    assert texts["threaded"] == "to_thread Event.wait", texts
    assert texts["parent"] == "nursery (1 task)", texts
    # AND each task's parent is the task owning its nursery; the parent waiting in the
    # nursery's __aexit__ awaits them
    assert tasks["child"]["parent"] == tasks["parent"]["id"]
    assert tasks["child"]["awaited_by"] == [tasks["parent"]["id"]]
    assert tasks["sleeper"]["parent"] == main["id"]
    assert tasks["sleeper"]["awaited_by"] == [main["id"]]
    assert sorted(main["awaiting"]["tasks"]) == sorted(
        task["id"]
        for task in snap["tasks"]
        if task["parent"] == main["id"] and task["state"] == "pending"  # (not its finished)
    )
    # AND the stack goes through the task's coroutines into trio's
    functions = [frame["function"] for frame in tasks["sleeper"]["stack"]]
    assert functions[:3] == ["sleeper", "sleep", "sleep_until"], functions


@pytest.mark.parametrize(
    "how", [(), ("--install-inside",), ("--install-before",)], ids=["run", "inside", "before"]
)
def test_trio_tasks_and_their_waits(start: Any, how: tuple[str, ...]) -> None:
    # GIVEN a trio program started with `taskscope run`, or calling install() inside
    # trio.run, or before it
    target = start("trio_app.py", *how, agent=not how).wait_ready()
    # WHEN the agent is asked
    snap = wait_for(lambda: agent_snapshot(target.pid), what="the agent")
    # THEN it shows one loop for the run and every task
    _check_tasks(snap)
    # AND `stack` shows a trio task's frames, with their source lines
    stack = run_cli("stack", str(target.pid), "sleeper")
    assert stack.returncode == 0, stack.stderr
    assert "await trio.sleep(3600)" in stack.stdout and "sleep_until" in stack.stdout, stack.stdout
    # AND the tree draws the nursery's children under their parent
    tree = run_cli("tree", str(target.pid))
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    parent_line = next(i for i, line in enumerate(lines) if " parent " in line)
    assert "child" in lines[parent_line + 1] and "└─" in lines[parent_line + 1], tree.stdout
    # AND it says what it does not know of trio tasks (those spawned before the agent watched
    # the run: none when it was in from the run's start, on 3.12+), not that tracking was off
    from_the_start = how != ("--install-inside",) and sys.version_info >= (3, 12)
    noted = any(" trio tasks spawned before the agent watched their run" in line for line in lines)
    assert noted is not from_the_start, tree.stdout
    assert "track_tasks off" not in tree.stdout
    code, _out, err = target.stop()
    assert code == 0, err


def test_cancel_a_trio_task_through_its_own_cancel_scope(start: Any) -> None:
    # GIVEN a trio program where `guarded` waits inside a cancel scope of its own, and
    # `waiter` waits directly under the nursery's scope, shared with its siblings
    target = start("trio_app.py").wait_ready()
    # WHEN a user cancels `guarded`
    result = run_cli("cancel", str(target.pid), "guarded")
    # THEN its own scope is cancelled on trio's thread: it sees Cancelled, the scope
    # catches it, and the task goes on after it
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "guarded went on" in notes(target), what="guarded to go on")
    assert "guarded cancelled" in notes(target)
    # WHEN a user cancels `parent`, waiting for the nursery it opened
    result = run_cli("cancel", str(target.pid), "parent")
    # THEN the scope of its nursery is its own (only it and its child run under it): the
    # child is cancelled, and the parent goes on after the nursery
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "parent went on" in notes(target), what="parent to go on")
    assert "child cancelled" in notes(target)
    # AND trio's own tasks are not cancelled
    init = run_cli("cancel", str(target.pid), "<init>")
    assert init.returncode != 0 and "one of trio's own tasks" in init.stderr, init.stderr
    # WHEN a user cancels `waiter`
    refused = run_cli("cancel", str(target.pid), "waiter")
    # THEN it is refused in one line saying why, and nothing is cancelled
    assert refused.returncode != 0
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "trio cancels through cancel scopes" in refused.stderr, refused.stderr
    left = by_name(agent_snapshot(target.pid))
    assert left["waiter"]["state"] == left["sleeper"]["state"] == "pending", left["waiter"]
    assert "sleeper cancelled" not in notes(target)
    code, _out, err = target.stop()
    assert code == 0, err


def test_a_blocked_trio_run_reads_as_blocked_then_keeps_the_stall(start: Any) -> None:
    # GIVEN a trio program whose run is then blocked in time.sleep for 4 s
    target = start("trio_app.py").wait_ready()
    wait_for(
        lambda: agent_snapshot(target.pid)["loops"][0]["blocked_for"] is None,
        what="the run said running",
    )
    target.file(f"block-{target.pid}").write_text("go")
    wait_for(lambda: "blocking" in notes(target), what="the run to block")
    # THEN, asked once a second into the block (nobody asked meanwhile: the agent watches
    # the run by itself), its loop reads as blocked, with where
    time.sleep(1.0)  # the block lasts 4 s: a quiet second of it, not a wait for a condition
    loop = agent_snapshot(target.pid)["loops"][0]
    assert loop["blocked_for"] is not None, loop
    functions = [frame["function"] for frame in loop["blocking_stack"]]
    assert functions[-1] == "stopper", functions
    # AND an ongoing stall of the stopper is listed, blocked on the same line
    [ongoing] = [stall for stall in loop["stalls"] if stall.get("ongoing")]
    assert ongoing["task_name"] == "stopper" and ongoing["duration"] > 0.5, ongoing
    assert ongoing["stack"][-1]["function"] == "stopper", ongoing
    # AND the run reads as busy (the watchdog's looks find the step each time)
    assert loop["busy_share"] >= 0.8, loop
    # AND once it turns again, it is no longer, and the block is kept as a stall of 4 s
    wait_for(lambda: "unblocked" in notes(target), what="the run to turn again")
    wait_for(
        lambda: agent_snapshot(target.pid)["loops"][0]["blocked_for"] is None,
        what="the run said running again",
    )
    [stall] = [stall for stall in _stopper_stalls(target.pid) if stall["duration"] > 1]
    assert not stall.get("ongoing") and 3.5 <= stall["duration"] <= 5.0, stall
    # AND, turning again with little to do, as mostly idle
    wait_for(
        lambda: agent_snapshot(target.pid)["loops"][0].get("busy_share", 1.0) <= 0.3,
        what="the run said mostly idle",
    )
    code, _out, err = target.stop()
    assert code == 0, err


#: The line of `time.sleep` in the target's hold_the_thread().
BLOCKING_LINE = next(
    number
    for number, text in enumerate((TARGETS / "trio_app.py").read_text().splitlines(), 1)
    if "# the blocking line" in text
)


def _stopper_stalls(pid: int) -> list[dict[str, Any]]:
    """The stalls the agent kept of the run, the stopper's (on a loaded machine another
    task's step may be descheduled past the threshold: a real stall, but not the test's)."""
    [loop] = agent_snapshot(pid)["loops"]
    assert loop["stall_threshold"] == 0.1, loop
    return [stall for stall in loop["stalls"] if stall["task_name"] == "stopper"]


@pytest.mark.parametrize("tracking", [True, False], ids=["tracked", "untracked"])
def test_a_step_that_blocks_a_trio_run_is_kept_as_a_stall(start: Any, tracking: bool) -> None:
    # GIVEN a trio program run with the agent, tasks tracked or not (the watchdog needs no
    # instrument)
    env = None if tracking else {"TASKSCOPE_TRACK": "0"}
    target = start("trio_app.py", env=env).wait_ready()
    wait_for(lambda: agent_snapshot(target.pid), what="the agent")
    # WHEN a task holds the run's thread for 0.3 s once, and then, for 1.2 s, in steps of
    # 60 ms with a checkpoint between them (the same task and frame at each step)
    target.file(f"short-block-{target.pid}").write_text("0.3")
    wait_for(lambda: "short-blocked" in notes(target), what="the block to end")
    target.file(f"short-steps-{target.pid}").write_text("0.06")
    wait_for(lambda: "short-stepped" in notes(target), what="the steps to end")
    # THEN the block is kept as one stall, with its task, length and blocking line; none
    # of the steps under the threshold is
    [stall] = _stopper_stalls(target.pid)
    assert stall["task"] is not None and stall["callback"] is None, stall
    assert not stall.get("ongoing")
    assert 0.2 <= stall["duration"] <= 0.8, stall
    functions = [frame["function"] for frame in stall["stack"]]
    assert functions[-2:] == ["stopper", "hold_the_thread"], functions
    assert stall["stack"][-1]["line"] == BLOCKING_LINE
    # AND `lint` warns of it, naming the task and the line
    lint = run_cli("lint", str(target.pid))
    assert "a step of stopper held the loop for" in lint.stdout, lint.stdout
    assert f"hold_the_thread() at {TARGETS / 'trio_app.py'}:{BLOCKING_LINE}" in lint.stdout
    code, _out, err = target.stop()
    assert code == 0, err


def test_attach_to_a_trio_program(start: Any) -> None:
    # GIVEN a trio program that never imported taskscope
    target = start("trio_app.py", agent=False).wait_ready()
    # WHEN `taskscope ps` looks at it (loading the agent)
    result = run_cli("ps", str(target.pid), timeout=90)
    # THEN it shows the run's tasks
    assert result.returncode == 0, result.stderr
    assert "Lock.acquire on lock (locked, 1 waiting), held by holder" in result.stdout
    _check_tasks(agent_snapshot(target.pid))
    code, _out, err = target.stop()
    assert code == 0, err


def test_the_agent_never_imports_trio() -> None:
    # GIVEN a fresh interpreter where the agent is installed and looks, without trio
    code = (
        "import sys, taskscope.agent as a; a.install(report=False); a.snapshot(); "
        "print('trio' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO)},
        check=True,
    )
    # THEN trio is never imported
    assert out.stdout.strip() == "False", out


def test_a_deadlock_on_trio_locks_is_found_by_lint(start: Any) -> None:
    # GIVEN two trio tasks, each holding the Lock the other waits for (trio knows holders)
    target = start("trio_deadlock.py").wait_ready()
    # WHEN `taskscope lint` looks
    result = run_cli("lint", str(target.pid))
    # THEN it names the deadlock, who holds what, and exits with the warnings status
    assert_lint_finds_the_transfer_deadlock(result)


def test_a_run_on_an_autojump_clock_jumps_as_without_the_agent(start: Any) -> None:
    # GIVEN a trio program whose MockClock jumps ahead after 0.5 s of idleness, started with
    # `taskscope run`, and looked at (the agent knows its run)
    target = start("trio_autojump.py").wait_ready()
    assert wait_for(lambda: agent_snapshot(target.pid)["loops"], what="the run")
    # THEN the agent's heartbeat does not keep it awake: its three 100 s sleeps end
    wait_for(lambda: "slept" in notes(target), timeout=20, what="the clock's jumps")
    code, _out, err = target.stop()
    assert code == 0, err


def test_trio_beside_asyncio_in_one_process(start: Any) -> None:
    # GIVEN a program running asyncio on its main thread and trio on another
    target = start("trio_beside_asyncio.py").wait_ready()
    snap = agent_snapshot(target.pid)
    # THEN each is a loop of its thread, with its own tasks and countdowns
    types = {loop["thread_name"]: loop["type"] for loop in snap["loops"]}
    assert types["trio-thread"] == "trio" and types["MainThread"] != "trio", types
    tasks = by_name(snap)
    loop_of = {loop["id"]: loop["thread_name"] for loop in snap["loops"]}
    assert loop_of[tasks["trio-sleeper"]["loop"]] == "trio-thread"
    assert loop_of[tasks["asyncio-sleeper"]["loop"]] == "MainThread"
    for name in ("trio-sleeper", "asyncio-sleeper"):
        assert 3500 < tasks[name]["awaiting"]["seconds_left"] <= 3600, tasks[name]
    code, _out, err = target.stop()
    assert code == 0, err


def test_calls_waiting_for_a_worker_thread_wait_on_the_default_limiter(start: Any) -> None:
    # GIVEN a trio program whose default thread limiter (3 tokens) is exhausted: five tasks
    # call `to_thread.run_sync`, three run in worker threads and two wait for a token
    target = start("trio_threads.py").wait_ready()
    tasks = by_name(agent_snapshot(target.pid))
    threaded = [tasks[f"threaded-{number}"] for number in range(5)]
    texts = sorted(task["awaiting"]["text"] for task in threaded)
    # THEN those waiting for a token say which limiter (trio's borrowers are its threads'
    # placeholders, not tasks: no holders are named)
    waiting = "CapacityLimiter.acquire on the default thread limiter (value 0, 2 waiting)"
    # AND those in threads say where the program's call is in its thread (trio's thread
    # names, made of the call's and the task's, are not repeated)
    lines = (TARGETS / "trio_threads.py").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "# a blocking call with no" in text)
    in_thread = f"to_thread wait_for_release, at wait_for_release() trio_threads.py:{line}"
    assert texts == [waiting] * 2 + [in_thread] * 3, texts
    # WHEN the blocking calls return
    target.file(f"release-{target.pid}").write_text("go")
    # THEN all five ran theirs
    wait_for(lambda: "all threaded done" in notes(target), what="the five calls to return")
    code, _out, err = target.stop()
    assert code == 0, err
