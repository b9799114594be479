"""taskscope on programs that run uvloop's event loop: under `taskscope run` (the agent goes
first, uvloop is imported after it) and attached to a process that never heard of taskscope.
uvloop's loop is compiled: its timers, its thread and its start are hidden from the agent's
usual hooks, so these tests check what a user relies on still holds there: who created a task,
the history, cancelling one task, and a blocked loop said to be blocked, with where."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from taskscope.protocol import socket_path
from tests.helpers import TARGETS, Target, agent_snapshot, by_name, notes, run_cli, wait_for

pytest.importorskip("uvloop", reason="the uvloop tests need uvloop (pip install uvloop)")

APP = "uvloop_app.py"


def dump(pid: int) -> dict[str, Any]:
    result = run_cli("dump", str(pid), timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def blocked_look(target: Target, look: Any) -> dict[str, Any]:
    """Cue the program's `indexer` to block the loop for 1.5 s, and look while it does until
    a look says it is blocked (a loop counts as blocked once a quarter second late)."""
    target.file(f"stall-{target.pid}").write_text("go")
    wait_for(lambda: "blocking" in notes(target), what="the loop to block")
    while True:
        snap: dict[str, Any] = look()
        if "unblocked" in notes(target) or snap["loops"][0]["blocked_for"] is not None:
            return snap


def assert_blocked_in_rebuild_index(snap: dict[str, Any]) -> None:
    [loop] = snap["loops"]
    assert loop["type"] == "Loop", loop
    assert loop["blocked_for"] is not None and loop["blocked_for"] >= 0.25, loop
    functions = [frame["function"] for frame in loop["blocking_stack"]]
    assert "rebuild_index" in functions, loop["blocking_stack"]


def assert_sleeps_with_seconds_left(task: dict[str, Any]) -> None:
    """uvloop's timers are out of the agent's reach, but a sleep's seconds left are told."""
    awaiting = task["awaiting"]
    assert awaiting["kind"] == "sleep", task
    assert 3000 < awaiting["seconds_left"] <= 3600, awaiting
    assert awaiting["text"].startswith("sleep, ") and awaiting["text"].endswith(" s left")


def cancel_the_victim_alone(target: Target, look: Any) -> None:
    """Once the block is over, `taskscope cancel PID victim`: the victim notes its
    cancellation, the other tasks are still there, and the program ends cleanly."""
    wait_for(lambda: "unblocked" in notes(target), what="the block to end")
    result = run_cli("cancel", str(target.pid), "victim")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "victim cancelled" in notes(target), what="the victim's cancellation")
    assert "child-of-spawner" in by_name(look())
    code, _out, err = target.stop()
    assert code == 0, err


def test_taskscope_run_on_uvloop_tracks_creators_history_and_blocks(start: Any) -> None:
    # GIVEN a uvloop program started under `taskscope run`, whose main task is running when
    # the agent first looks (uvloop.run's wrapper around it cannot be seen through then)
    target = start(APP, "hold").wait_ready()
    assert by_name(agent_snapshot(target.pid))["Task-1"]["awaiting"] is None
    target.file(f"looked-{target.pid}").write_text("go")
    snap = wait_for(
        lambda: (
            (look := agent_snapshot(target.pid))["loops"][0]["blocked_for"] is None
            and by_name(look)["Task-1"]["awaiting"] is not None
            and look
        ),
        what="the main task to wait",
    )
    tasks = by_name(snap)
    # THEN the agent saw its loop start: who created each task, and the failed task's end
    assert tasks["child-of-spawner"]["parent"] == tasks["spawner"]["id"], tasks["child-of-spawner"]
    # (the main task is named by the program's coroutine, not by uvloop.run's wrapper around it)
    assert tasks["Task-1"]["coro"] == "main", tasks["Task-1"]
    assert_sleeps_with_seconds_left(tasks["victim"])
    [failed] = [task for task in snap["tasks"] if task["name"] == "fails"]
    assert failed["state"] == "failed" and "ValueError" in failed["exception"], failed
    # WHEN the loop blocks in time.sleep
    snap = blocked_look(target, lambda: agent_snapshot(target.pid))
    # THEN the look says so, and where
    assert_blocked_in_rebuild_index(snap)
    # AND cancelling one task by name cancels it alone; the program goes on and ends cleanly
    cancel_the_victim_alone(target, lambda: agent_snapshot(target.pid))
    assert "loop uvloop" in notes(target)


def test_install_after_uvloop_was_imported_still_sees_a_blocked_loop(start: Any) -> None:
    # GIVEN a uvloop program that imported uvloop before calling taskscope.install() (uvloop
    # then calls asyncio's own function when its loop starts, not the agent's)
    target = start(APP, "install", agent=False).wait_ready()
    wait_for(lambda: os.path.exists(socket_path(target.pid)), what="the agent's socket")
    # WHEN a client looks (the agent meets the loop through its tasks), then the loop blocks
    assert {"spawner", "victim", "indexer"} <= set(by_name(agent_snapshot(target.pid)))
    # (the agent then runs on the loop: its heartbeat measures the loop's lag)
    wait_for(
        lambda: agent_snapshot(target.pid)["loops"][0]["lag"] is not None,
        what="the agent's heartbeat on the uvloop loop",
    )
    snap = blocked_look(target, lambda: agent_snapshot(target.pid))
    # THEN a look says it is blocked, and where
    assert_blocked_in_rebuild_index(snap)
    wait_for(lambda: "unblocked" in notes(target), what="the block to end")
    code, _out, err = target.stop()
    assert code == 0, err


#: The line of `time.sleep` in the target's hold_the_loop().
SHORT_BLOCKING_LINE = next(
    number
    for number, text in enumerate((TARGETS / APP).read_text().splitlines(), 1)
    if "# the short blocking line" in text
)


def cue_and_wait(target: Target, cue: str, seconds: float, done: str) -> None:
    target.file(f"{cue}-{target.pid}").write_text(str(seconds))
    wait_for(lambda: done in notes(target), what=done)


@pytest.mark.parametrize("how", ["run", "install"])
def test_stalls_on_uvloop_are_kept_with_their_task_or_callback(start: Any, how: str) -> None:
    # GIVEN a uvloop program under `taskscope run`, or calling install() after importing
    # uvloop, once the agent's heartbeat has run on its loop (uvloop runs callbacks in C:
    # the watchdog learns from the heartbeat's caller which frame runs the loop)
    target = start(*([APP] if how == "run" else [APP, "install"]), agent=how == "run")
    target.wait_ready()
    wait_for(
        lambda: agent_snapshot(target.pid)["loops"][0]["lag"] is not None,
        what="the agent's heartbeat on the uvloop loop",
    )
    # WHEN a task holds the loop 0.3 s once, then for 1.2 s in steps of 60 ms, and then a
    # plain callback holds it 0.3 s
    cue_and_wait(target, "short-block", 0.3, "short-blocked")
    cue_and_wait(target, "short-steps", 0.06, "short-stepped")
    cue_and_wait(target, "callback-block", 0.3, "callback-blocked")
    # THEN the two blocks are kept as stalls, the first with its task, the second with its
    # callback, each with the blocking line; none of the short steps is
    [loop] = agent_snapshot(target.pid)["loops"]
    stalls = [stall for stall in loop["stalls"] if stall["stack"]]
    in_task = [stall for stall in stalls if stall["task_name"] == "stepper"]
    in_callback = [stall for stall in stalls if stall["callback"] == "blocking_callback"]
    assert len(in_task) == 1 and len(in_callback) == 1, loop["stalls"]
    for stall in (*in_task, *in_callback):
        assert 0.2 <= stall["duration"] <= 0.8, stall
        assert stall["stack"][-1] == {
            "function": "hold_the_loop",
            "file": str(TARGETS / APP),
            "line": SHORT_BLOCKING_LINE,
        }, stall
    assert in_callback[0]["task"] is None
    # AND the loop's busy share is estimated
    assert 0 <= loop["busy_share"] <= 1, loop
    # AND `lint` warns of the task's stall by its line
    lint = run_cli("lint", str(target.pid))
    assert f"hold_the_loop() at {TARGETS / APP}:{SHORT_BLOCKING_LINE}" in lint.stdout, lint.stdout
    code, _out, err = target.stop()
    assert code == 0, err


needs_gdb = pytest.mark.skipif(
    shutil.which("gdb") is None and sys.version_info < (3, 14),
    reason="attaching to Python 3.11-3.13 needs gdb (apt-get install gdb)",
)


@needs_gdb
def test_attach_to_a_plain_uvloop_program_sees_a_block_and_cancels(tmp_path: Path) -> None:
    # GIVEN a uvloop program that never imported taskscope
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    process = subprocess.Popen(
        [sys.executable, str(TARGETS / APP), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    target = Target(process, tmp_path, agent=False)
    try:
        target.wait_ready()
        # WHEN taskscope attaches (the first dump injects the agent)
        tasks = by_name(dump(target.pid))
        assert {"spawner", "child-of-spawner", "victim", "indexer"} <= set(tasks), tasks
        assert_sleeps_with_seconds_left(tasks["victim"])
        assert tasks["Task-1"]["coro"] == "main", tasks["Task-1"]
        # THEN a block of the loop is seen while it lasts, with where
        snap = blocked_look(target, lambda: dump(target.pid))
        assert_blocked_in_rebuild_index(snap)
        # AND once over, the block is kept as a stall of the indexer
        wait_for(lambda: "unblocked" in notes(target), what="the block to end")
        [loop] = dump(target.pid)["loops"]
        [stall] = [stall for stall in loop["stalls"] if stall["task_name"] == "indexer"]
        assert stall["stack"][-1]["function"] == "rebuild_index" and stall["duration"] > 1, stall
        # AND `cancel` cancels the victim alone
        cancel_the_victim_alone(target, lambda: dump(target.pid))
    finally:
        target.kill()
