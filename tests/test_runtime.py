"""Runtime figures and stalls against real processes (tests/targets/runtime.py): a step that
blocks the loop is kept with its task and the blocking line, by `taskscope run` and by an
attach, the threshold is honoured, steps are counted and `ps --sort busy` puts the busiest
task first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskscope.client import AgentClient
from tests.helpers import REPO, TARGETS, Target, agent_snapshot, run_cli, wait_for

SCRIPT = TARGETS / "runtime.py"
#: The line of `time.sleep` in the target's block().
BLOCKING_LINE = next(
    number
    for number, text in enumerate(SCRIPT.read_text().splitlines(), 1)
    if "# the blocking line" in text
)


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[Any]:
    started: list[Target] = []

    def _launch(*options: str, seconds: float = 0.3, env: dict[str, str] | None = None) -> Target:
        """The target started with `taskscope run OPTIONS`."""
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.update(env or {})
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskscope",
                "run",
                *options,
                str(SCRIPT),
                str(tmp_path),
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=tmp_path,
        )
        target = Target(process, tmp_path, agent=True)
        started.append(target)
        return target.wait_ready()

    yield _launch
    for target in started:
        target.kill()


def dump(pid: int) -> dict[str, Any]:
    result = run_cli("dump", str(pid), timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def noted(target: Target, text: str) -> bool:
    path = target.file(f"notes-{target.pid}")
    return path.exists() and text in path.read_text().split()


def block_once(target: Target) -> None:
    """Let the target block its loop, and wait until the block is over."""
    target.file(f"go-{target.pid}").write_text("go")
    wait_for(lambda: noted(target, "blocked"), timeout=30, what="the block to end")


def blocker_stalls(snap: dict[str, Any]) -> list[dict[str, Any]]:
    """The stalls of the blocker's block (on a loaded machine, the burner's 3 ms steps, or
    the blocker's own short steps before the block, may be descheduled for longer than the
    threshold: stalls as real as any, but not the test's; their stacks are not in `block`)."""
    return [
        stall
        for loop in snap["loops"]
        for stall in loop.get("stalls", [])
        if stall["task_name"] != "burner" and (stall["task_name"] != "blocker" or in_block(stall))
    ]


def in_block(stall: dict[str, Any]) -> bool:
    return any(frame["function"] == "block" for frame in stall.get("stack") or ())


def the_stall(snap: dict[str, Any]) -> dict[str, Any]:
    stalls = blocker_stalls(snap)
    assert len(stalls) == 1, [loop.get("stalls") for loop in snap["loops"]]  # every stall kept
    return dict(stalls[0])


def assert_names_the_blocking_line(
    stall: dict[str, Any], seconds: float, short_by: float = 0.1
) -> None:
    assert stall["task_name"] == "blocker"
    assert stall["task"] is not None
    assert stall["callback"] is None
    assert not stall.get("ongoing")
    innermost = stall["stack"][-1]
    assert innermost == {"function": "block", "file": str(SCRIPT), "line": BLOCKING_LINE}
    assert stall["stack"][-2]["function"] == "blocker"
    # Timed, the length is exact; watched from the agent's thread, good to a quarter of the
    # threshold either way, or to half the time the machine kept the agent's thread from
    # running (a loaded machine may also stretch the block itself).
    assert seconds - short_by <= stall["duration"] <= seconds + 0.5


@pytest.mark.parametrize("timed", [False, True], ids=["watched", "timed"])
def test_a_block_is_kept_with_its_task_and_line(launched: Any, timed: bool) -> None:
    # GIVEN a program started with `taskscope run` whose task blocks the loop 300 ms once
    target = launched(*(["--time-steps"] if timed else []), seconds=0.3)
    block_once(target)
    # WHEN `taskscope dump` looks after the block is over
    snap = dump(target.pid)
    # THEN the stall is listed with the task's name and the line of time.sleep
    loop = snap["loops"][0]
    assert loop["stall_threshold"] == 0.1
    assert_names_the_blocking_line(the_stall(snap), 0.3)
    if timed:
        assert loop["steps_per_s"] >= 0 and 0 <= loop["busy_share"] <= 1
        assert noted(target, "handle_run:steps.py")
    else:
        assert "steps_per_s" not in loop
        assert 0 < loop["busy_share"] <= 1  # estimated from the watchdog's looks
        assert noted(target, "handle_run:events.py")  # nothing of ours runs per step


def test_a_block_under_the_threshold_is_not_kept(launched: Any) -> None:
    # GIVEN a threshold of 250 ms, and a 150 ms block
    target = launched("--stall-threshold", "0.25", seconds=0.15)
    block_once(target)
    # THEN no stall is kept
    snap = dump(target.pid)
    assert snap["loops"][0]["stall_threshold"] == 0.25
    assert blocker_stalls(snap) == []


def test_the_threshold_comes_from_the_environment(launched: Any) -> None:
    target = launched(seconds=0.15, env={"TASKSCOPE_STALL_THRESHOLD": "0.05"})
    block_once(target)
    snap = dump(target.pid)
    assert snap["loops"][0]["stall_threshold"] == 0.05
    assert_names_the_blocking_line(the_stall(snap), 0.15)


def test_an_ongoing_block_is_listed_while_it_lasts(launched: Any) -> None:
    # GIVEN a block of 5 s
    target = launched(seconds=5.0)
    target.file(f"go-{target.pid}").write_text("go")

    def ongoing() -> dict[str, Any] | None:
        stalls = blocker_stalls(agent_snapshot(target.pid))
        return stalls[-1] if stalls and stalls[-1].get("ongoing") else None

    # THEN while it lasts, a stall says so, with the line it is blocked on
    stall = wait_for(ongoing, timeout=10, what="an ongoing stall")
    assert stall["task_name"] == "blocker"
    assert stall["stack"][-1]["line"] == BLOCKING_LINE
    assert stall["duration"] > 0.1


def test_steps_and_busy_time_per_task(launched: Any) -> None:
    # GIVEN steps timed, a task that runs 50 steps and one that burns CPU in each step
    target = launched("--time-steps")
    wait_for(lambda: noted(target, "stepped"), what="the stepper's steps")

    def burnt() -> dict[str, dict[str, Any]] | None:
        tasks = {task["name"]: task for task in agent_snapshot(target.pid)["tasks"]}
        return tasks if tasks["burner"].get("busy_s", 0) > 0.05 else None

    tasks = wait_for(burnt, timeout=20, what="the burner's busy time")
    # THEN the steps are counted, and the figures are consistent
    stepper = tasks["stepper"]
    assert stepper["steps"] >= 51
    assert stepper["longest_step_s"] <= stepper["busy_s"]
    assert stepper["last_ran_at"] <= stepper["waiting_since"] <= tasks["burner"]["last_ran_at"]
    assert "steps" not in tasks["idler"] or tasks["idler"]["steps"] <= 1
    # AND `ps --sort busy` lists the burner first, with the busy and steps columns
    head, rows = ps_rows(target.pid, "--sort", "busy")
    assert "BUSY" in head and "STEPS" in head
    assert "burner" in rows[0].split(), rows
    # AND `--sort steps` a task with at least the stepper's steps first
    _head, rows = ps_rows(target.pid, "--sort", "steps")
    assert {"burner", "stepper"} & set(rows[0].split()), rows
    _head, rows = ps_rows(target.pid, "--sort", "name")
    assert "Task-1" in rows[0].split() and "blocker" in rows[1].split(), rows


def ps_rows(pid: int, *options: str) -> tuple[str, list[str]]:
    """The head line of `taskscope ps` and its rows."""
    result = run_cli("ps", *options, str(pid))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    at = next(index for index, line in enumerate(lines) if line.split()[:1] == ["ID"])
    return lines[at], [line for line in lines[at + 1 :] if line.strip()]


def test_ps_without_timing_has_no_busy_column(launched: Any) -> None:
    target = launched()
    result = run_cli("ps", str(target.pid))
    assert result.returncode == 0, result.stderr
    assert "BUSY" not in result.stdout
    assert "burner" in result.stdout


def test_the_process_is_left_as_it_was_after_detach(launched: Any) -> None:
    # GIVEN steps timed
    target = launched("--time-steps")
    assert run_cli("detach", str(target.pid)).returncode == 0
    # THEN asyncio's own Handle._run runs the steps again, and the program goes on
    block_once(target)
    assert noted(target, "handle_run:events.py")
    code, _out, err = target.stop()
    assert code == 0, err
    assert err == ""


needs_attach = pytest.mark.skipif(
    shutil.which("gdb") is None and sys.version_info < (3, 14),
    reason="attaching to Python 3.11-3.13 needs gdb (apt-get install gdb)",
)


@needs_attach
def test_a_block_is_kept_by_an_attached_agent(start: Any) -> None:
    # GIVEN a program that never imported taskscope, and an agent loaded by `dump`
    target = start("runtime.py", "1.2", agent=False).wait_ready()
    first = dump(target.pid)
    assert blocker_stalls(first) == []
    # WHEN its task blocks the loop 1.2 s (an agent just loaded, on a loaded CI machine, saw
    # too little of a 300 ms block, and once of a 600 ms one, to keep it: the watch samples
    # from the agent's thread, which such a machine may not run for a long while)
    block_once(target)
    # THEN the next dump lists the stall with the task's name and line
    assert_names_the_blocking_line(the_stall(dump(target.pid)), 1.2, short_by=0.6)


def test_sorting_by_busy_without_timed_steps_says_how_to_time_them(launched: Any) -> None:
    # GIVEN a program run without --time-steps (the default)
    target = launched()
    # WHEN a user asks for the busiest tasks first
    result = run_cli("ps", str(target.pid), "--sort", "busy", timeout=60)
    # THEN the table is there, in id order, and one line on stderr says how to get the figures
    assert result.returncode == 0, result.stderr
    assert "BUSY" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--time-steps" in lines[0], result.stderr


def whose_handle_run(target: Target, asked: int) -> str:
    """Ask the target whose `Handle._run` runs its steps now (its `asked`-th question)."""
    target.file(f"ask-{target.pid}-{asked}").write_text("ask")

    def told() -> str | None:
        path = target.file(f"notes-{target.pid}")
        words = path.read_text().split() if path.exists() else []
        return next((w.split(":")[1] for w in words if w.startswith(f"run-{asked}:")), None)

    return str(wait_for(told, timeout=30, what="the target to say whose Handle._run runs"))


def test_step_timing_is_turned_on_and_off_in_a_running_process(launched: Any) -> None:
    # GIVEN a program started WITHOUT --time-steps
    target = launched(seconds=0.3)
    assert whose_handle_run(target, 1) == "events.py"
    # WHEN a user asks for the busiest tasks first, turning the timing on
    result = run_cli("ps", "--sort", "busy", "--time-steps", str(target.pid), timeout=60)
    # THEN the CPU-burning task comes first, with the figures, and stderr says what happened
    assert result.returncode == 0, result.stderr
    assert "step timing is on" in result.stderr and "--off" in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    at = next(index for index, line in enumerate(lines) if line.split()[:1] == ["ID"])
    assert "BUSY" in lines[at] and "STEPS" in lines[at]
    assert "burner" in lines[at + 1].split(), result.stdout
    assert whose_handle_run(target, 2) == "steps.py"
    burner = next(task for task in agent_snapshot(target.pid)["tasks"] if task["name"] == "burner")
    assert burner["steps"] >= 1 and burner["busy_s"] > 0
    # (the loop's rates are measured now: they need a first sample after the switch)
    wait_for(lambda: "steps_per_s" in agent_snapshot(target.pid)["loops"][0], what="measured rates")
    # AND a block is now timed exactly, with its task and line
    block_once(target)
    assert noted(target, "handle_run:steps.py")
    assert_names_the_blocking_line(the_stall(dump(target.pid)), 0.3)
    # WHEN it is turned off again
    result = run_cli("time-steps", "--off", str(target.pid))
    assert result.returncode == 0, result.stderr
    assert "step timing is off" in result.stderr
    # THEN asyncio's own Handle._run runs the steps, the figures are gone, the program goes on
    assert whose_handle_run(target, 3) == "events.py"
    snap = agent_snapshot(target.pid)
    assert all("steps" not in task for task in snap["tasks"])
    assert "steps_per_s" not in snap["loops"][0]
    code, _out, err = target.stop()
    assert code == 0, err
    assert err == ""


def test_a_bad_time_steps_request_is_refused_and_the_agent_keeps_serving(
    launched: Any,
) -> None:
    from taskscope.client import ClientError
    from taskscope.protocol import Request

    target = launched()
    with AgentClient(target.pid) as client:
        for bad in ("yes", 1, None, {"code": "x"}):
            request = Request("time_steps", on=bad)  # type: ignore[arg-type]
            with pytest.raises(ClientError, match="'on' must be true or false"):
                client._request(request)
        # The same connection goes on: a snapshot, and a valid request answered with the state
        assert client.snapshot()["tasks"]
        assert client.time_steps(False) is False
        assert client.time_steps(True) is True
    assert whose_handle_run(target, 1) == "steps.py"


@needs_attach
def test_an_agent_loaded_by_ps_time_steps_times_the_steps_at_once(start: Any) -> None:
    # GIVEN a program that never imported taskscope
    target = start("runtime.py", "0.3", agent=False).wait_ready()
    # WHEN `ps --sort busy --time-steps` loads the agent
    result = run_cli("ps", "--sort", "busy", "--time-steps", str(target.pid), timeout=120)
    # THEN the burner is listed first, with its figures, and the timed Handle._run runs
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    at = next(index for index, line in enumerate(lines) if line.split()[:1] == ["ID"])
    assert "BUSY" in lines[at] and "burner" in lines[at + 1].split(), result.stdout
    assert whose_handle_run(target, 1) == "steps.py"


def test_time_steps_without_task_tracking_is_refused_in_one_line(launched: Any) -> None:
    target = launched("--no-track")
    result = run_cli("time-steps", str(target.pid))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "task tracking" in lines[0], result.stderr
    # AND turning off what is off is no error
    result = run_cli("time-steps", "--off", str(target.pid))
    assert result.returncode == 0, result.stderr
    assert "step timing is off" in result.stderr
