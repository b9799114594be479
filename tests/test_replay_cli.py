"""`taskscope dump|tree|ps --from FILE [--at T]` on a recording of a real process made with
`taskscope record`: the states of the moment asked for, in the words of a live look."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from taskscope.recording import open_recording
from taskscope.words import WAIT_BOUND_NOTE
from tests.helpers import Target, record_around_a_cue, run_cli, wait_for


def record_with_a_finish(target: Target, path: Path) -> None:
    """Record `target` (tests/targets/replay_steps.py) with `taskscope record`, cue its
    waiter to finish in the middle, and stop the recorder with Ctrl-C."""
    err = record_around_a_cue(
        target, path, cue=f"finish-{target.pid}", done=f"finished-{target.pid}", before=3, after=3
    )
    assert "recorded" in err


@pytest.fixture
def recorded(start: Any, tmp_path: Path) -> tuple[Target, Path]:
    target = start("replay_steps.py").wait_ready()
    path = tmp_path / "steps.tsrec"
    record_with_a_finish(target, path)
    return target, path


def _states(text: str) -> dict[str, str]:
    snapshot = json.loads(text)
    assert snapshot["schema"] == 1
    return {task["name"]: task["state"] for task in snapshot["tasks"]}


def test_dump_from_at_two_times_shows_the_states_of_those_times(
    recorded: tuple[Target, Path],
) -> None:
    _target, path = recorded
    # The first moment: the waiter still waits on its Event, in the words of a live dump.
    first = run_cli("dump", "--from", str(path), "--at", "0")
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    assert _states(first.stdout)["waiter"] == "pending"
    waiter = next(t for t in json.loads(first.stdout)["tasks"] if t["name"] == "waiter")
    assert "Event" in waiter["awaiting"]["text"]
    # The last moment (the default, and -0 from the end): it has finished.
    for args in ([], ["--at", "-0"]):
        last = run_cli("dump", "--from", str(path), *args)
        assert last.returncode == 0, last.stderr
        states = _states(last.stdout)
        assert states["waiter"] == "done"
        assert states["keeper"] == "pending"
    # Its taken_at is the recording's, not now.
    recording = open_recording(path)
    assert json.loads(last.stdout)["taken_at"] == recording.end
    assert json.loads(first.stdout)["taken_at"] == recording.start


def test_tree_and_ps_from_read_as_the_live_commands_did(recorded: tuple[Target, Path]) -> None:
    target, path = recorded

    def shape(text: str) -> list[str]:
        # Ages and countdowns differ between then and now; everything else must not. So does
        # whether a wait known only from the looks is said at all (from 1 s on, `WAIT_SHOWN`):
        # the recording lasts about half a second, the live command comes later.
        durations = r"\d+(\.\d+)?(ms|s|m\d+s|h\d+m)?"
        lines = []
        for line in text.splitlines():
            if line == WAIT_BOUND_NOTE:
                continue
            # (the tree says a wait after what it awaits: `…, for 1.2s`)
            words = re.sub(r", for ≥?N", "", re.sub(durations, "N", line)).split()
            lines.append(" ".join(word for word in words if word not in ("WAITED", "≥N")))
        return lines

    for command in ("tree", "ps"):
        live = run_cli(command, "-a", str(target.pid))
        replayed = run_cli(command, "-a", "--from", str(path))
        assert live.returncode == 0 and replayed.returncode == 0, replayed.stderr
        assert shape(replayed.stdout) == shape(live.stdout)
        assert "waiter" in replayed.stdout


def test_ages_and_countdowns_are_said_at_the_recorded_time(recorded: tuple[Target, Path]) -> None:
    _target, path = recorded
    recording = open_recording(path)
    keeper = next(t for t in recording.snapshot_at()["tasks"] if t["name"] == "keeper")
    # Now is well past the recording's end, so words said at now would differ.
    wait_for(lambda: time.time() > recording.end + 2, what="time to pass the recording")
    for at, moment in (("0", recording.start), ("-0", recording.end)):
        shown = run_cli("ps", "--from", str(path), "--at", at)
        line = next(line for line in shown.stdout.splitlines() if "keeper" in line)
        # The keeper sleeps 90 s from its creation: what is left at that moment.
        left = float(re.search(r"(\d+(?:\.\d+)?) s left", line).group(1))  # type: ignore[union-attr]
        assert abs(left - (90 - (moment - keeper["created_at"]))) < 0.15, line
        number, unit = re.search(r"(\d+(?:\.\d+)?)(ms|s) ", line).groups()  # type: ignore[union-attr]
        age = float(number) / (1000 if unit == "ms" else 1)
        assert abs(age - (moment - keeper["created_at"])) < 0.15, line


def test_errors_are_one_line(tmp_path: Path, recorded: tuple[Target, Path]) -> None:
    target, path = recorded
    notes = tmp_path / "notes.txt"
    notes.write_text("not a recording\n")
    cases = [
        (["dump", "--from", str(tmp_path / "missing.tsrec")], "cannot read"),
        (["tree", "--from", str(notes)], "is not a taskscope recording"),
        (["ps", "--from", str(path), "--at", "soon"], "not a time"),
        (["dump", str(target.pid), "--from", str(path)], "not both"),
        (["dump", "--at", "3"], "--at needs --from"),
        (["tree"], "needs a PID (`taskscope list` shows the Python processes), or --from FILE"),
    ]
    for args, words in cases:
        result = run_cli(*args)
        assert result.returncode != 0, args
        assert words in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr
    # --at past the end is brought to the end, with a note saying so.
    late = run_cli("dump", "--from", str(path), "--at", "9999")
    assert late.returncode == 0
    assert "outside the recording; showing" in late.stderr
    assert json.loads(late.stdout)["taken_at"] == open_recording(path).end
