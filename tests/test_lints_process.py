"""The lints against real processes (tests/targets/lint_cases.py): each situation built for
real is reported by `taskscope lint` (exit status 4), `dump`'s `warnings`, and marked in `ps`
and `tree`; a healthy program of the same shape raises none (exit status 0)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.helpers import TARGETS, Target, run_cli, wait_for


def lint(target: Target) -> tuple[int, list[str]]:
    result = run_cli("lint", str(target.pid), "--no-inject")
    assert result.returncode in (0, 4), result.stderr
    return result.returncode, result.stdout.splitlines()


def dump(target: Target) -> dict[str, Any]:
    result = run_cli("dump", str(target.pid), "--no-inject")
    assert result.returncode == 0, result.stderr
    snapshot: dict[str, Any] = json.loads(result.stdout)
    return snapshot


def warnings_of(target: Target) -> list[dict[str, Any]]:
    warnings: list[dict[str, Any]] = dump(target)["warnings"]
    return warnings


def kinds_of(target: Target) -> list[str]:
    return [warning["kind"] for warning in warnings_of(target)]


def test_an_await_cycle_is_a_warning_everywhere(start: Any) -> None:
    target = start("lint_cases.py", "cycle").wait_ready()
    # dump: one warning, naming both tasks by id, with its words
    snapshot = dump(target)
    warnings = snapshot["warnings"]
    names = {task["id"]: task["name"] for task in snapshot["tasks"]}
    assert [w["kind"] for w in warnings] == ["await_cycle"]
    first, second = (names[task_id] for task_id in warnings[0]["tasks"])
    assert {first, second} == {"cycle-a", "cycle-b"}
    assert warnings[0]["text"] == (
        f"await cycle: {first} and {second} await each other: none of them can finish"
    )
    # lint: the line, exit status 4
    status, lines = lint(target)
    assert (status, lines) == (4, [warnings[0]["text"]])
    # ps: the two tasks marked, the warning under the table; --warnings: only them
    ps = run_cli("ps", str(target.pid), "--no-inject").stdout.splitlines()
    marked = [line for line in ps if line.startswith("! ")]
    assert {line.split()[3] for line in marked[:2]} == {"cycle-a", "cycle-b"}
    assert "1 warning (!: a task with a warning" in "\n".join(ps)
    assert ps[-1] == "! " + warnings[0]["text"]
    only = run_cli("ps", str(target.pid), "--no-inject", "--warnings").stdout
    assert "main" not in only.split("\n", 2)[2].split("warning")[0]
    assert "cycle-a" in only
    # tree: the marker before what each task does
    tree = run_cli("tree", str(target.pid), "--no-inject").stdout.splitlines()
    assert sum(1 for line in tree if " ! awaiting task" in line) == 2


@pytest.mark.parametrize(
    "case", ["healthy_chain", "handoff", "failed_awaited", "queue", "poll", "cleanup"]
)
def test_a_healthy_program_of_the_same_shape_has_no_warning(start: Any, case: str) -> None:
    # (steps timed: a poller that sleeps for real between its steps is no spin; a stall
    # threshold of 1 s: a machine shared by other jobs may hold an idle step past 0.1 s, the
    # blocking step's own healthy twin below keeps the default)
    environment = {"TASKSCOPE_TIME_STEPS": "1", "TASKSCOPE_STALL_THRESHOLD": "1"}
    target = start("lint_cases.py", case, env=environment).wait_ready()
    assert lint(target) == (0, [])
    assert warnings_of(target) == []
    ps = run_cli("ps", str(target.pid), "--no-inject").stdout
    assert "warning" not in ps
    assert not any(line.startswith("!") for line in ps.splitlines())


def test_two_tasks_holding_each_others_lock_are_a_lock_deadlock(start: Any) -> None:
    target = start("lint_cases.py", "deadlock").wait_ready()
    snapshot = dump(target)
    ids = {task["name"]: task["id"] for task in snapshot["tasks"]}
    # one warning: the deadlock (its tasks never wake, which it explains), both tasks named
    assert [(w["kind"], set(w["tasks"])) for w in snapshot["warnings"]] == [
        ("lock_deadlock", {ids["transfer-a"], ids["transfer-b"]})
    ]
    # each task names its locks `first` and `second`: numbered apart
    first = snapshot["warnings"][0]["text"].split()[2]
    other = "transfer-a" if first == "transfer-b" else "transfer-b"
    assert snapshot["warnings"][0]["text"] == (
        f"lock deadlock: {first} holds Lock A and waits for Lock B, held by {other}, "
        "which waits for Lock A"
    )
    status, lines = lint(target)
    assert (status, lines) == (4, [snapshot["warnings"][0]["text"]])
    # both wait on a lock they call `second`: every view names them as the warning does,
    # the lock `first` waits for B, the one `other` waits for A
    texts = {task["name"]: task["awaiting"]["text"] for task in snapshot["tasks"]}
    assert texts[first].startswith("Lock.acquire on second (Lock B, locked, 1 waiting)")
    assert texts[other].startswith("Lock.acquire on second (Lock A, locked, 1 waiting)")
    ps = run_cli("ps", str(target.pid), "--no-inject").stdout
    rows = {
        line.split()[3]: line
        for line in ps.splitlines()
        if line.startswith("! ") and " pending " in line
    }
    assert "on second (Lock B," in rows[first]
    assert "on second (Lock A," in rows[other]
    tree = run_cli("tree", str(target.pid), "--no-inject").stdout
    assert "on second (Lock A," in tree
    assert "on second (Lock B," in tree


@pytest.mark.parametrize("case", ["abandoned", "abandoned_gone"])
def test_a_lock_whose_holder_failed_without_releasing_it_is_abandoned(
    start: Any, case: str
) -> None:
    # GIVEN a module's lock taken with acquire() by a task that failed before releasing it
    # (kept, or collected since), and two workers queued on it
    target = start("lint_cases.py", case).wait_ready()
    snapshot = dump(target)
    ids = {task["name"]: task["id"] for task in snapshot["tasks"] if task["state"] == "pending"}
    # THEN one warning about both workers says who held it and what to do
    assert [(w["kind"], sorted(w["tasks"])) for w in snapshot["warnings"]] == [
        ("abandoned_lock", sorted([ids["worker-0"], ids["worker-1"]]))
    ]
    holder = "loader, which failed" if case == "abandoned" else "a task that has ended"
    text = snapshot["warnings"][0]["text"]
    assert re.fullmatch(r"abandoned lock: worker-([01]) and worker-(?!\1)[01] wait for .*", text)
    assert text.endswith(
        f" wait for DB_LOCK, held by {holder} without releasing it: nothing will (take it "
        "with `async with`, or release it in a `finally`)"
    )
    status, lines = lint(target)
    assert (status, lines) == (4, [snapshot["warnings"][0]["text"]])


def test_a_failed_task_nobody_awaited_is_a_warning(start: Any) -> None:
    target = start("lint_cases.py", "failed").wait_ready()

    def reported() -> list[dict[str, Any]]:
        # (a failure is reported once a second old: its waiter may run at the next turn)
        warnings = warnings_of(target)
        return [w for w in warnings if w["kind"] == "exception_never_retrieved"]

    warnings = wait_for(reported, what="the exception_never_retrieved warning")
    assert warnings[0]["text"] == (
        "exception never retrieved: failing failed with ValueError('boom') and nobody awaited it"
    )


def notes_of(target: Target) -> str:
    path = target.file(f"notes-{target.pid}")
    return path.read_text() if path.exists() else ""


def test_a_cancel_a_blocked_loop_has_not_delivered_is_a_warning_until_it_is(start: Any) -> None:
    # GIVEN a program whose loop blocks itself for a few seconds, and a cancel meanwhile
    target = start("newcomer.py").wait_ready()
    target.file(f"block-{target.pid}").write_text("6")
    wait_for(lambda: "blocking" in notes_of(target), what="the loop to block")
    assert run_cli("cancel", str(target.pid), "victim").returncode == 0

    # THEN once it waits over a second, lint says so, naming the task
    def not_honoured() -> list[str]:
        return [line for line in lint(target)[1] if line.startswith("cancel not honoured")]

    lines = wait_for(not_honoured, timeout=5, what="the cancel_not_honoured warning")
    assert re.fullmatch(
        r"cancel not honoured: victim was asked to cancel \d+\.\d s ago and its loop has "
        r"not delivered it",
        lines[0],
    )
    # AND once the loop runs and delivers it, the warning goes
    wait_for(lambda: "victim cancelled" in notes_of(target), timeout=30, what="the cancel")
    assert not not_honoured()


def test_a_cancel_a_running_loop_delivers_is_no_warning(start: Any) -> None:
    target = start("newcomer.py").wait_ready()
    assert run_cli("cancel", str(target.pid), "victim").returncode == 0
    wait_for(lambda: "victim cancelled" in notes_of(target), what="the cancel")
    assert not any(line.startswith("cancel") for line in lint(target)[1])


# --- runtime: a step that blocked the loop, a sleep(0) spin -----------------------------------


def test_a_step_that_blocked_the_loop_is_a_warning_naming_the_task_and_line(start: Any) -> None:
    # GIVEN a task that blocks its loop 300 ms once with time.sleep, and then ends
    target = start("lint_cases.py", "stall").wait_ready()
    warnings = [w for w in warnings_of(target) if w["kind"] == "blocking_step"]
    # THEN its stall is a warning naming the task (gone since) and the blocking line
    assert len(warnings) == 1
    assert re.fullmatch(
        r"blocking step: a step of blocker held the loop for \d+ms in stall\.<locals>\.blocker\(\)"
        r" at \S+lint_cases\.py:\d+ \(at \d\d:\d\d:\d\d\)",
        warnings[0]["text"],
    )
    line = int(warnings[0]["text"].split(".py:")[1].split()[0])
    source = (TARGETS / "lint_cases.py").read_text().splitlines()
    assert "time.sleep(0.3)" in source[line - 1]


def test_a_pause_that_awaits_instead_is_no_blocking_step(start: Any) -> None:
    target = start("lint_cases.py", "pause").wait_ready()
    assert [w for w in warnings_of(target) if w["kind"] == "blocking_step"] == []


def test_a_sleep0_spin_is_a_warning_when_steps_are_timed(start: Any) -> None:
    target = start("lint_cases.py", "spin", env={"TASKSCOPE_TIME_STEPS": "1"}).wait_ready()
    warnings = [w for w in warnings_of(target) if w["kind"] == "sleep0_spin"]
    assert len(warnings) == 1
    assert re.match(
        r"sleep\(0\) spin: spinner ran \d+ steps \(\d+\.\d a second\) without waiting on "
        r"anything",
        warnings[0]["text"],
    )


def test_a_task_that_caught_its_cancel_and_goes_on_is_a_warning(start: Any) -> None:
    # GIVEN a task cancelled by its program that catches the CancelledError and goes on
    target = start("lint_cases.py", "stubborn").wait_ready()
    assert "ignored a cancel" in notes_of(target)

    # THEN once it has gone on for over 5 s (a cleanup may take a little), lint says so
    def swallowed() -> list[str]:
        return [line for line in lint(target)[1] if line.startswith("cancel not honoured")]

    lines = wait_for(swallowed, timeout=20, what="the cancel_not_honoured warning")
    assert re.fullmatch(
        r"cancel not honoured: stubborn was cancelled \d+\.\d s ago or more and goes on: it "
        r"caught the CancelledError \(re-raise it, or call uncancel\(\) if that is meant\)",
        lines[0],
    )


def test_a_lost_failure_is_reported_after_the_busy_history_moved_past_it(start: Any) -> None:
    # GIVEN a service whose history (50 kept) moves past a failure in milliseconds
    target = start("busy_failures.py", env={"TASKSCOPE_HISTORY": "50"}).wait_ready()

    def reported() -> list[dict[str, Any]]:
        return [w for w in warnings_of(target) if w["kind"] == "exception_never_retrieved"]

    # THEN the failure nobody awaited is still said, by dump and by lint (exit status 4)
    [warning] = wait_for(reported, what="the exception_never_retrieved warning")
    assert "lost-failure failed with ValueError('a row nobody reads')" in warning["text"]
    status, lines = lint(target)
    assert status == 4
    assert any("lost-failure" in line for line in lines)
    # AND what the history keeps beyond its limit is the failures only
    finished = [task for task in dump(target)["tasks"] if task["state"] != "pending"]
    assert [task["name"] for task in finished if task["state"] == "failed"] == ["lost-failure"]
    # (fewer when tasks ended between the look's read of the pending tasks and of the history:
    # those are said once, as the pending tasks the look found)
    assert len(finished) <= 50 + 1
