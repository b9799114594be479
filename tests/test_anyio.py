"""taskscope on a program written with anyio (asyncio backend), which runs every task's
coroutine inside a wrapper of its own (`TaskHandle._run_coro`): tasks are named by the
coroutine they were made to run, pending and once finished, and cancelling one by name
cancels it alone (a `Task.cancel()` would cancel its whole task group)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from taskscope.cli.exits import EXIT_WARNINGS
from tests.helpers import (
    TARGETS,
    agent_snapshot,
    assert_lint_finds_the_transfer_deadlock,
    by_name,
    notes,
    run_cli,
    wait_for,
)

pytest.importorskip("anyio", reason="these tests need anyio (pip install anyio)")


def test_anyio_tasks_are_named_by_their_own_coroutines(start: Any) -> None:
    # GIVEN an anyio program started with `taskscope run`
    target = start("anyio_app.py").wait_ready()
    snap = agent_snapshot(target.pid)
    tasks = by_name(snap)
    # THEN each task is named by its own coroutine, the main one too
    assert {name: tasks[name]["coro"] for name in ("worker-0", "sleeper", "finisher")} == {
        "worker-0": "worker",
        "sleeper": "sleeper",
        "finisher": "finisher",
    }
    [main] = [task for task in snap["tasks"] if task["name"].endswith("main")]
    assert main["coro"] == "main", main
    # AND anyio's waits are told in plain words: who holds the lock, the semaphore's value,
    # the stream, the thread call, the task group
    texts = {name: task["awaiting"]["text"] for name, task in tasks.items() if task["awaiting"]}
    assert texts["lock-waiter"] == "Lock.acquire on lock (locked, 1 waiting), held by holder"
    assert tasks["lock-waiter"]["awaiting"]["object"]["holders"] == [tasks["holder"]["id"]]
    assert texts["gate-waiter"] == "Semaphore.acquire on gate (value 0, 1 waiting)"
    assert texts["sender"] == "MemoryObjectSendStream.send on outbox (0 items)"
    assert texts["threaded"] == "to_thread Event.wait in AnyIO worker thread"
    # (anyio's own Event, CapacityLimiter and sleep_forever, not what asyncio runs inside)
    assert texts["worker-0"] == "Event.wait on event (not set, 2 waiting)"
    assert texts["limit-waiter"] == (
        "CapacityLimiter.acquire on limiter (value 0, 1 waiting), held by holder"
    )
    assert tasks["limit-waiter"]["awaiting"]["object"]["holders"] == [tasks["holder"]["id"]]
    assert texts["dreamer"] == "sleep forever"
    assert main["awaiting"]["text"] == "TaskGroup (12 tasks)", main["awaiting"]
    # (and the group's tasks are awaited by the task that waits for the group)
    assert tasks["sleeper"]["awaited_by"] == [main["id"]], tasks["sleeper"]
    # (anyio's wrapper is still on the stack)
    functions = [frame["function"] for frame in tasks["sleeper"]["stack"]]
    assert functions[:2] == ["TaskHandle._run_coro", "sleeper"], functions
    # WHEN a task the agent has seen finishes
    target.file(f"finish-{target.pid}").write_text("go")
    wait_for(lambda: "finished" in notes(target), what="the finisher to end")
    # THEN the history names it alike
    finished = wait_for(
        lambda: [
            task
            for task in agent_snapshot(target.pid)["tasks"]
            if task["name"] == "finisher" and task["state"] == "done"
        ],
        what="the finisher in the history",
    )
    assert finished[0]["coro"] == "finisher", finished
    # AND cancelling one task by name cancels it alone (through its own cancel scope, as
    # anyio does: it ends as done), its siblings and the group go on
    result = run_cli("cancel", str(target.pid), "sleeper")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "sleeper cancelled" in notes(target), what="the sleeper's cancellation")
    left = wait_for(
        lambda: (
            (names := by_name(agent_snapshot(target.pid)))["sleeper"]["state"] == "done" and names
        ),
        what="the sleeper's end",
    )
    assert left["worker-0"]["state"] == left["worker-1"]["state"] == "pending", left["worker-0"]
    assert "sibling cancelled" not in notes(target)
    code, _out, err = target.stop()
    assert code == 0, err


def test_a_deadlock_on_anyio_locks_is_found_by_lint(start: Any) -> None:
    # GIVEN two anyio tasks, each holding the lock the other waits for
    target = start("anyio_deadlock.py").wait_ready()
    # WHEN `taskscope lint` looks
    result = run_cli("lint", str(target.pid))
    # THEN it names the deadlock, who holds what, and exits with the warnings status
    assert_lint_finds_the_transfer_deadlock(result)


def test_calls_waiting_for_a_worker_thread_wait_on_the_default_limiter(start: Any) -> None:
    # GIVEN an anyio program whose default thread limiter (3 tokens) is exhausted: five tasks
    # call `to_thread.run_sync`, three run in worker threads and two wait for a token
    target = start("anyio_threads.py").wait_ready()
    tasks = by_name(agent_snapshot(target.pid))
    threaded = [tasks[f"threaded-{number}"] for number in range(5)]
    in_threads = sorted(
        (task for task in threaded if task["awaiting"]["kind"] == "executor"),
        key=lambda task: int(task["id"]),
    )
    waiting = [task for task in threaded if task["awaiting"]["kind"] == "semaphore"]
    # THEN those in threads wait for their call, the others for the limiter (not for a
    # thread they have not reached), which is named, with who holds its tokens
    assert (len(in_threads), len(waiting)) == (3, 2), [task["awaiting"] for task in threaded]
    lines = (TARGETS / "anyio_threads.py").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "# a blocking call with no" in text)
    place = f"at wait_for_release() anyio_threads.py:{line}"
    assert {task["awaiting"]["text"] for task in in_threads} == {
        f"to_thread wait_for_release in AnyIO worker thread, {place}"
    }
    holder_names = ", ".join(task["name"] for task in in_threads)
    for task in waiting:
        facts = task["awaiting"]["object"]
        assert facts["thread_limiter"] is True, facts
        assert facts["holders"] == [task["id"] for task in in_threads], facts
        assert task["awaiting"]["text"] == (
            "CapacityLimiter.acquire on the default thread limiter (value 0, 2 waiting),"
            f" held by {holder_names}"
        )
    # AND the tree says so
    tree = run_cli("tree", str(target.pid))
    assert tree.returncode == 0, tree.stderr
    assert tree.stdout.count("on the default thread limiter (value 0, 2 waiting)") == 2, tree.stdout
    # AND once they have waited over a second, `lint` warns that its tokens are exhausted
    time.sleep(1.2)
    lint = run_cli("lint", str(target.pid))
    assert lint.returncode == EXIT_WARNINGS, (lint.stdout, lint.stderr)
    assert (
        "for a worker thread: all 3 tokens of the default thread limiter are taken, by"
        f" {holder_names}; the threads' calls are {place} (3):"
    ) in lint.stdout, lint.stdout
    # WHEN the blocking calls return
    target.file(f"release-{target.pid}").write_text("go")
    # THEN all five ran theirs, the two that waited too: the look changed nothing
    wait_for(lambda: "all threaded done" in notes(target), what="the five calls to return")
    code, _out, err = target.stop()
    assert code == 0, err
