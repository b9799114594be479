"""`taskscope replay FILE` on a recording of a real process (made with `taskscope record`):
in pilot, and once in a real terminal (tmux). Open it, step, see the shown time and a task's
state change, play; every view works; cancel says a recording cannot."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from taskscope.recording import open_recording
from taskscope.sources.recording import RecordingSource
from taskscope.ui.replay import ReplayApp
from taskscope.words import recording_moment
from tests.helpers import REPO, Target, wait_for
from tests.test_replay_cli import record_with_a_finish
from tests.ui.harness import SIZE, screen_text, until
from tests.ui.test_tmux_e2e import Terminal


def _recorded(start: Any, tmp_path: Path) -> tuple[Target, Path]:
    target = start("replay_steps.py").wait_ready()
    path = tmp_path / "steps.tsrec"
    record_with_a_finish(target, path)
    return target, path


def _state(app: ReplayApp, name: str) -> str | None:
    task = next((task for task in app.model.tasks.values() if task.name == name), None)
    return None if task is None else task.state


def test_replay_steps_plays_and_shows_every_view(start: Any, tmp_path: Path) -> None:
    target, path = _recorded(start, tmp_path)
    recording = open_recording(path)
    source = RecordingSource(recording, at=recording.start)
    app = ReplayApp(source)

    def moment(at: float) -> str:
        return recording_moment(at, recording.start, recording.end)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.updates_applied >= 1, what="the first snapshot")

            def header() -> str:
                return app.header._last_text.plain if app.header._last_text else ""

            await until(pilot, lambda: "recording of" in header(), what="the replay header")
            assert f"recording of {target.pid}" in header()
            assert moment(recording.start) in header() and "paused · 1x" in header()
            assert _state(app, "waiter") == "pending"
            # The clock is the moment shown: ages are said then, not now.
            assert app.clock() == recording.start
            # Step on, update by update, until the waiter has finished.
            steps = 0
            while _state(app, "waiter") == "pending":
                before = app.updates_applied
                await pilot.press("right_square_bracket")
                await until(pilot, lambda b=before: app.updates_applied > b, what="a step")
                steps += 1
                assert source.position == recording.times[steps]
            assert _state(app, "waiter") == "done"
            assert 0 < steps < len(recording.times)
            # Back one: it waits again.
            await pilot.press("left_square_bracket")
            await until(pilot, lambda: _state(app, "waiter") == "pending", what="a step back")
            # The end, then the start.
            await pilot.press("end")
            await until(pilot, lambda: _state(app, "waiter") == "done", what="the end")
            await until(pilot, lambda: moment(recording.end) in header(), what="end shown")
            await pilot.press("home")
            await until(pilot, lambda: _state(app, "waiter") == "pending", what="the start")
            # Play at half speed: it moves by itself to the end, and pauses there.
            await pilot.press("minus", "minus")
            assert source.speed == 0.25
            await pilot.press("plus")
            assert source.speed == 0.5
            await pilot.press("space")
            await until(pilot, lambda: "playing · 0.5x" in header(), what="playing shown")
            await until(pilot, lambda: _state(app, "waiter") == "done", what="played on")
            await until(pilot, lambda: not source.playing, within=30, what="the end of play")
            await until(pilot, lambda: "paused · 0.5x" in header(), what="paused at the end")
            assert source.position == recording.end
            # Go to a typed time: 0 is the start.
            await pilot.press("colon")
            await pilot.press("0", "enter")
            await until(pilot, lambda: source.position == recording.start, what="typed time")
            # The timeline is read and marks the moment shown.
            await until(pilot, lambda: bool(app.strip.pending), what="the timeline")
            assert len(app.strip.pending) == len(recording.times)
            # Every view shows the recorded tasks (at the end: the waiter is in the history).
            await pilot.press("end")
            await until(pilot, lambda: _state(app, "waiter") == "done", what="the end again")
            for key in ("l", "h", "t"):
                await pilot.press(key)
                await until(pilot, lambda: "waiter" in screen_text(app), what=f"view {key}")
            await pilot.press("g")
            await until(pilot, lambda: "wait_for_cue" in screen_text(app) or "tick" in
                        screen_text(app), what="the grouped view")  # fmt: skip
            await pilot.press("t")
            # Cancel: one line, nothing else, saying why a recording cannot (not that the
            # process lacks an agent: it had one) and where to cancel instead.
            assert app.jump_to(next(t.id for t in app.model.tasks.values() if t.name == "keeper"))
            await pilot.press("c")
            await pilot.pause()
            await until(
                pilot,
                lambda: any("cannot cancel" in str(n.message) for n in app._notifications),
                what="the cannot-cancel line",
            )
            line = next(
                str(n.message) for n in app._notifications if "cannot cancel" in str(n.message)
            )
            assert "it shows the past" in line and f"taskscope attach {target.pid}" in line
            assert "needs the taskscope agent" not in line

    asyncio.run(main())


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_replay_in_a_real_terminal(start: Any, tmp_path: Path) -> None:
    target, path = _recorded(start, tmp_path)
    recording = open_recording(path)

    def moment(at: float) -> str:
        return recording_moment(at, recording.start, recording.end)

    terminal = Terminal("replay")
    try:
        env = {"PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
        terminal.start([sys.executable, "-m", "taskscope", "replay", str(path)], env)
        wait_for(lambda: f"recording of {target.pid}" in terminal.screen(), 30, "the header")
        assert moment(recording.start) in terminal.screen()
        terminal.keys("End")
        wait_for(lambda: moment(recording.end) in terminal.screen(), 15, "the end")
        wait_for(lambda: "✓ waiter" in terminal.screen(), 15, "the waiter shown finished")
        terminal.keys("Home")
        wait_for(lambda: moment(recording.start) in terminal.screen(), 15, "the start")
        wait_for(lambda: "● waiter" in terminal.screen(), 15, "the waiter shown pending")
        terminal.keys("]")
        wait_for(lambda: moment(recording.times[1]) in terminal.screen(), 15, "one step on")
        terminal.keys("Space")
        wait_for(lambda: "playing · 1x" in terminal.screen(), 15, "playing")
        wait_for(lambda: "paused · 1x" in terminal.screen(), 30, "played to the end")
        assert moment(recording.end) in terminal.screen()
        terminal.keys("q")
        wait_for(lambda: not terminal.alive(), 15, "the dashboard to quit")
    finally:
        terminal.kill()
    assert os.path.exists(path)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_attach_record_writes_a_readable_recording_while_watching(
    start: Any, tmp_path: Path
) -> None:
    target = start("replay_steps.py").wait_ready()
    path = tmp_path / "watched.tsrec"
    terminal = Terminal("attach-record")
    try:
        env = {
            "PYTHONPATH": str(REPO),
            "TERM": "xterm-256color",
            "TASKSCOPE_SOCKET_DIR": os.environ["TASKSCOPE_SOCKET_DIR"],
        }
        command = [sys.executable, "-m", "taskscope", "attach", str(target.pid), "--record"]
        terminal.start([*command, str(path), "--interval", "0.1"], env)
        wait_for(lambda: "● waiter" in terminal.screen(), 30, "the dashboard on the target")
        # While it is watched, the waiter finishes: the recording has it both ways.
        target.file(f"finish-{target.pid}").write_text("go")
        wait_for(lambda: "✓ waiter" in terminal.screen(), 15, "the waiter shown finished")
        terminal.keys("q")
        wait_for(lambda: not terminal.alive(), 15, "the dashboard to quit")
    finally:
        terminal.kill()
    recording = open_recording(path)
    assert recording.facts["pid"] == target.pid and not recording.cut_short

    def waiter(at: float) -> str:
        return next(t["state"] for t in recording.snapshot_at(at)["tasks"] if t["name"] == "waiter")

    assert waiter(recording.start) == "pending"
    assert waiter(recording.end) == "done"
