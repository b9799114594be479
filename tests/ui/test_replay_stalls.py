"""The replay's marks of what went wrong, on a recording of a real process that blocks its
loop (tests/targets/stall_on_cue.py): the timeline marks the stall (once, though the agent
keeps it in every update after) and the moments with warnings, `n` lands just after the stall
with the stalls view listing it, `N` goes back to it, and `lint --from FILE --at T` tells the
moment before the stall from the one after."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from taskscope.recording import open_recording
from taskscope.sources.recording import RecordingSource
from taskscope.ui.help_screen import HelpScreen
from taskscope.ui.replay import STALL_MARK, WARNING_MARK, ReplayApp, read_timeline
from tests.helpers import REPO, Target, record_around_a_cue
from tests.ui.harness import SIZE, screen_text, until

EXIT_WARNINGS = 4


def _record_a_stall(target: Target, path: Path) -> None:
    """Record `target` with `taskscope record`, cue its stall in the middle, stop with Ctrl-C."""
    record_around_a_cue(
        target, path, cue=f"stall-{target.pid}", done=f"stalled-{target.pid}", before=5, after=8
    )


def _lint(path: Path, *at: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "taskscope", "lint", "--from", str(path), *at],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def test_replay_marks_the_stall_and_jumps_to_it(start: Any, tmp_path: Path) -> None:
    target = start("stall_on_cue.py").wait_ready()
    path = tmp_path / "stall.tsrec"
    _record_a_stall(target, path)
    recording = open_recording(path)

    # One stall, though many updates carry it; inside the recording; warnings after it.
    facts = read_timeline(recording)
    assert len(facts.stalls) == 1, facts.stalls
    stall = facts.stalls[0]
    assert stall.task_name == "indexer" and not stall.ongoing
    assert 0.25 <= stall.duration < 2.0
    assert recording.start < stall.started_at < recording.end
    assert stall.started_at + stall.duration <= stall.shown_from
    assert facts.warned and all(at >= stall.shown_from for at, _count in facts.warned)

    # lint --from --at: nothing before the stall, the blocking step after it.
    before = _lint(path, "--at", "0")
    assert before.returncode == 0, before.stderr
    assert "no warnings" in before.stderr
    after = _lint(path)
    assert after.returncode == EXIT_WARNINGS, after.stderr
    assert "indexer" in after.stdout and "rebuild_index" in after.stdout

    source = RecordingSource(recording, at=recording.start)
    app = ReplayApp(source)

    def timeline() -> str:
        return screen_text(app).splitlines()[app.strip.region.y]

    def notified(words: str) -> bool:
        return any(words in str(note.message) for note in app._notifications)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.updates_applied >= 1, what="the first snapshot")
            await until(pilot, lambda: app.timeline_read, what="the timeline read")
            await pilot.pause()
            # The timeline marks the stall once, and the warnings found at the end.
            assert timeline().count(STALL_MARK) == 1, timeline()
            assert WARNING_MARK in timeline()
            assert timeline().index(STALL_MARK) < timeline().index(WARNING_MARK)
            # At the start the stalls view has nothing yet.
            await pilot.press("b")
            await until(pilot, lambda: "no step longer than" in screen_text(app), what="empty")
            assert "rebuild_index" not in screen_text(app)
            # n: just after the stall; the stalls view lists it, with its blocking line.
            await pilot.press("n")
            await until(pilot, lambda: source.position == stall.shown_from, what="the jump")
            await until(pilot, lambda: "rebuild_index" in screen_text(app), what="the stall")
            assert "indexer" in screen_text(app)
            assert notified("stall 1 of 1: indexer blocked the loop")
            await pilot.press("n")
            await until(pilot, lambda: notified("No later stall"), what="no later stall")
            # The end, then N: back to just after the stall.
            await pilot.press("end")
            await until(pilot, lambda: source.position == recording.end, what="the end")
            await pilot.press("N")
            await until(pilot, lambda: source.position == stall.shown_from, what="back")
            await pilot.press("N")
            await until(pilot, lambda: notified("No earlier stall"), what="no earlier stall")
            # The help screen says both keys (its table scrolls: read its rows).
            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help")
            assert isinstance(app.screen, HelpScreen)
            keys = dict(app.screen.keys)
            assert keys["n"].startswith("just after the next stall")
            assert keys["N"].startswith("just after the previous stall")

    asyncio.run(main())


def test_a_stall_seen_running_then_ended_is_one_mark() -> None:
    """The agent says a running stall's start from another clock than the ended stall's (a
    microsecond apart): one stall all the same, landing where it is first seen ended; a
    later stall of the same loop, and one of another loop at the same time, are others."""
    from taskscope.ui.replay import StallMark, _note_stall

    def stall(started_at: float, duration: float, ongoing: bool = False) -> dict[str, Any]:
        record = {"started_at": started_at, "duration": duration, "task_name": "indexer"}
        return {**record, "ongoing": True} if ongoing else record

    marks: dict[tuple[str, float], StallMark] = {}
    _note_stall(marks, "L1", stall(100.000001, 0.15, ongoing=True), at=100.2)
    _note_stall(marks, "L1", stall(100.000001, 0.25, ongoing=True), at=100.3)
    _note_stall(marks, "L2", stall(100.0, 0.5), at=100.6)
    _note_stall(marks, "L1", stall(100.0, 0.3), at=100.4)
    _note_stall(marks, "L1", stall(100.0, 0.3), at=100.5)
    _note_stall(marks, "L1", stall(101.0, 0.2), at=101.3)
    ones = sorted((mark.loop, mark.started_at, mark.duration, mark.shown_from, mark.ongoing)
                  for mark in marks.values())  # fmt: skip
    assert ones == [
        ("L1", 100.0, 0.3, 100.4, False),
        ("L1", 101.0, 0.2, 101.3, False),
        ("L2", 100.0, 0.5, 100.6, False),
    ]
