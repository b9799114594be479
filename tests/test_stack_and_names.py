"""What `stack` shows of a recursion, how `ps` and `tree` line up names that take two
terminal cells a character, and how a program is named in their header whichever way its
command line was read: against real programs (tests/targets/deep_and_wide.py, a program under
`taskscope run` with a Python helper), and the pure parts on their own."""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from taskscope.model import TaskInfo
from taskscope.report import REPEATED_FRAMES_SHOWN, program_words, safe_text, stack_items
from taskscope.sources.recording import RecordingSource
from tests.helpers import REPO, agent_snapshot, by_name, program_in_own_session, run_cli

DEEP, SHALLOW = 300, 20  # as in the target
WIDE_NAME = "名前の長いタスク"


def _cells(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _frame(function: str, line: int) -> dict[str, Any]:
    return {"function": function, "file": "app.py", "line": line}


def test_a_run_of_frames_alike_is_cut_to_a_few_and_a_count() -> None:
    frames = [_frame("outer", 1)] + [_frame("descend", 7)] * 10 + [_frame("descend", 5)]
    items = stack_items(frames)
    assert items[: 1 + REPEATED_FRAMES_SHOWN] == frames[: 1 + REPEATED_FRAMES_SHOWN]
    assert items[1 + REPEATED_FRAMES_SHOWN] == (
        f"[the frame above repeated {10 - REPEATED_FRAMES_SHOWN} more times]"
    )
    assert items[-1] == _frame("descend", 5)
    assert len(items) == 1 + REPEATED_FRAMES_SHOWN + 1 + 1


def test_frames_alike_up_to_the_limit_are_all_shown() -> None:
    frames = [_frame("descend", 7)] * REPEATED_FRAMES_SHOWN + [_frame("descend", 5)]
    assert stack_items(frames) == frames


def test_the_gap_the_agent_left_is_said_where_it_is_and_breaks_the_runs() -> None:
    frames = [_frame("descend", 7)] * 6
    items = stack_items(frames, left_out_at=2, left_out=50)
    assert items == [
        frames[0],
        frames[1],
        "[50 coroutines left out here: the chain is deeper than the agent sends, its "
        "outermost and innermost frames are shown]",
        frames[2],
        frames[3],
        frames[4],
        "[the frame above repeated 1 more time]",
    ]


def test_a_cut_name_fits_its_cells_even_when_a_wide_character_straddles_the_edge() -> None:
    assert safe_text(WIDE_NAME, 10) == "名前の長 …"  # 4 wide (8 cells), a space, the mark
    assert _cells(safe_text(WIDE_NAME, 9)) == 9
    assert safe_text(WIDE_NAME, 16) == WIDE_NAME


def _printed_frames(stdout: str) -> list[str]:
    """The frame lines of `taskscope stack` (two spaces, then the function), before its
    creation chain."""
    stack = stdout.split("created from:")[0]
    return [line for line in stack.splitlines() if line.startswith("  ") and line[2:3] not in " ["]


def test_stack_of_a_deep_recursion_says_what_the_agent_left_out(start: Any) -> None:
    target = start("deep_and_wide.py").wait_ready()
    tasks = by_name(agent_snapshot(target.pid))
    result = run_cli("stack", str(target.pid), tasks["deep"]["id"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # DEEP + 1 frames of descend and asyncio.sleep's: 200 sent, the rest left out.
    gap = [line for line in lines if "left out here" in line]
    assert len(gap) == 1 and gap[0].startswith(f"  [{DEEP + 2 - 200} coroutines left out here")
    repeats = [line.strip() for line in lines if "the frame above repeated" in line]
    # 100 outermost frames alike, then (after the gap) 98 alike and the one that sleeps.
    assert repeats == [
        f"[the frame above repeated {100 - REPEATED_FRAMES_SHOWN} more times]",
        f"[the frame above repeated {98 - REPEATED_FRAMES_SHOWN} more times]",
    ]
    assert "await asyncio.sleep(3600)" in result.stdout
    assert len(_printed_frames(result.stdout)) == 2 * REPEATED_FRAMES_SHOWN + 2


def test_a_deep_tasks_record_says_what_its_stack_leaves_out(start: Any) -> None:
    # GIVEN a task 302 coroutines deep (DEEP + 1 of descend, asyncio.sleep's) and one of 22
    target = start("deep_and_wide.py").wait_ready()
    tasks = by_name(agent_snapshot(target.pid))
    deep, shallow = tasks["deep"], tasks["shallow"]
    # THEN its record sends 200 frames and says that 102 are left out after the 100 outermost
    assert len(deep["stack"]) == 200
    assert list(deep["stack_left_out"]) == [100, DEEP + 2 - 200]
    assert deep["stack"][99]["function"] == deep["stack"][100]["function"] == "descend"
    assert "stack_left_out" not in shallow and len(shallow["stack"]) == SHALLOW + 2
    # AND `dump`'s JSON (written from the compact rows) says the same
    result = run_cli("dump", str(target.pid))
    assert result.returncode == 0, result.stderr
    dumped = by_name(json.loads(result.stdout))
    assert dumped["deep"]["stack_left_out"] == [100, DEEP + 2 - 200]
    assert "stack_left_out" not in dumped["shallow"]
    # AND the model the dashboard shows a recording with carries it
    assert TaskInfo.from_wire(deep).stack_left_out == (100, DEEP + 2 - 200)


def test_a_recordings_stack_says_what_a_deep_recursion_leaves_out(
    start: Any, tmp_path: Path
) -> None:
    # GIVEN a recording of the deep task (no agent to ask for its stack when it is replayed)
    target = start("deep_and_wide.py").wait_ready()
    deep_id = by_name(agent_snapshot(target.pid))["deep"]["id"]
    path = tmp_path / "deep.tsrec"
    result = run_cli("record", str(target.pid), "-o", str(path), "--duration", "1")
    assert result.returncode == 0, result.stderr
    # THEN the stack the replay shows says the gap, as the agent's stack reply does
    source = RecordingSource(path)
    try:
        reply = source.stack(deep_id)
    finally:
        source.close()
    assert reply["found"] and len(reply["stack"]) == 200
    assert (reply.get("left_out_at"), reply.get("left_out")) == (100, DEEP + 2 - 200)


@pytest.mark.parametrize("value", [[100], ["1", 2], [-1, 2], [3, 0], "3,4", None, [True, 5]])
def test_a_left_out_that_is_no_place_and_count_is_ignored(value: Any) -> None:
    record: Any = {**_RECORD, "stack_left_out": value}
    assert TaskInfo.from_wire(record).stack_left_out is None


_RECORD = {
    "id": "1",
    "loop": "L1",
    "name": "t",
    "state": "pending",
    "coro": "f",
    "stack": [],
    "awaiting": None,
    "awaited_by": [],
    "parent": None,
    "created_at": None,
    "finished_at": None,
}


def test_stack_of_a_shallow_recursion_is_whole(start: Any) -> None:
    target = start("deep_and_wide.py").wait_ready()
    tasks = by_name(agent_snapshot(target.pid))
    result = run_cli("stack", str(target.pid), tasks["shallow"]["id"])
    assert result.returncode == 0, result.stderr
    assert "left out" not in result.stdout
    assert f"[the frame above repeated {SHALLOW - REPEATED_FRAMES_SHOWN} more times]" in (
        result.stdout
    )
    assert len(_printed_frames(result.stdout)) == REPEATED_FRAMES_SHOWN + 2


def test_ps_and_tree_line_up_names_of_wide_characters(start: Any) -> None:
    target = start("deep_and_wide.py").wait_ready()
    for command, first in (("ps", "CORO"), ("tree", None)):
        result = run_cli(command, str(target.pid))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        wide = next(line for line in lines if WIDE_NAME in line)
        plain = next(line for line in lines if " plain " in line or line.startswith("plain "))
        # The coroutine column starts at the same cell in both rows.
        assert _cells(wide[: wide.index("sleep()")]) == _cells(plain[: plain.index("sleep()")])
        if first is not None:
            head = next(line for line in lines if first in line)
            assert _cells(head[: head.index(first)]) == _cells(plain[: plain.index("sleep()")])


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["app.py", "--port", "80"], ["app.py", "--port", "80"]),  # a program's own sys.argv
        (["/usr/bin/python3.14", "-X", "dev", "-u", "/srv/app.py", "a"], ["app.py", "a"]),
        (
            ["python3", "-m", "taskscope.agent.launch", "--history", "50", "--time-steps", "a.py"],
            ["a.py"],
        ),
        (["python3.12", "-m", "http.server", "8000"], ["-m", "http.server", "8000"]),
        (["/srv/pkg/__main__.py", "a"], ["-m", "pkg", "a"]),
        (["python_tool.py", "--x"], ["python_tool.py", "--x"]),  # a script, not an interpreter
    ],
)
def test_a_program_is_named_by_its_script_and_arguments(argv: list[str], words: list[str]) -> None:
    assert program_words(argv) == words


def test_tree_names_the_program_under_taskscope_run_when_it_has_a_python_helper(
    tmp_path: Path,
) -> None:
    # GIVEN `taskscope run --history 50 helped.py now` whose program runs a Python helper: the
    # header is made from the kernel's command line (several Python processes), which names
    # the interpreter and taskscope's launcher
    ready = tmp_path / "ready"
    script = tmp_path / "helped.py"
    script.write_text(
        "import asyncio, subprocess, sys\n"
        "async def main():\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"    open({str(ready)!r}, 'w').write('ready')\n"
        "    await asyncio.sleep(120)\n"
        "asyncio.run(main())\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "taskscope", "run", "--history", "50", str(script), "now"]
    with program_in_own_session(command, ready, "the program and its helper", env) as pid:
        tree = run_cli("tree", str(pid), timeout=90)
    # THEN it names the program as the user started it
    assert tree.returncode == 0, tree.stderr
    assert tree.stdout.splitlines()[0].split(" · ")[2] == "helped.py now"
