"""Who created each trio task, when and where, and how finished trio tasks ended: the agent's
instrument in a real trio program (tests/targets/trio_family.py), started with `taskscope run`,
calling install() before `trio.run`, or attached to; removed again by a detach. The program's
output is the same as without the agent."""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any

import pytest

from tests.helpers import TARGETS, Target, by_name, notes, run_cli, wait_for

pytest.importorskip("trio", reason="these tests need trio (pip install trio)")

needs_attach = pytest.mark.skipif(
    shutil.which("gdb") is None and sys.version_info < (3, 14),
    reason="attaching to Python 3.11-3.13 needs gdb (apt-get install gdb)",
)

#: Whether the agent learns of each `trio.run` as it starts (sys.monitoring, 3.12+): then under
#: `taskscope run` and install() before `trio.run` it sees every spawn of the run.
RUN_STARTS_SEEN = sys.version_info >= (3, 12)

#: What trio_family.py writes, and nothing else, with or without the agent.
OUTPUT = "hello\nbye\n"


def line_of(text: str) -> int:
    """The line of trio_family.py holding `text` (exactly one)."""
    lines = (TARGETS / "trio_family.py").read_text().splitlines()
    [number] = [index + 1 for index, line in enumerate(lines) if text in line]
    return number


def dump(target: Target) -> dict[str, Any]:
    result = run_cli("dump", str(target.pid), timeout=90)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def spawn_round(target: Target, round: int) -> None:
    """Ask the program for `parent-ROUND` and wait until its inner nursery is over."""
    target.file(f"spawn-{target.pid}").write_text("go")
    wait_for(lambda: f"parent-{round} caught ValueError" in notes(target), what=f"round {round}")


def origin(task: dict[str, Any]) -> tuple[str, int]:
    """The function and line of the innermost frame a task was created from."""
    frame = task["created_from"][0]
    assert frame["file"].endswith("trio_family.py"), task["created_from"]
    return frame["function"], frame["line"]


def check_family(snap: dict[str, Any], round: int) -> None:
    """Round `round` of trio_family.py as the agent saw it spawn and end."""
    tasks = by_name(snap)
    [loop] = snap["loops"]
    assert loop["spawns_seen_since"] <= tasks[f"parent-{round}"]["created_at"], loop
    main, parent = tasks["__main__.main"], tasks[f"parent-{round}"]
    # THEN the parent was created by main, at main's start_soon line
    assert parent["parent"] == main["id"], parent
    assert origin(parent) == ("main", line_of("nursery.start_soon(parent")), parent
    assert parent["created_at"] and "first_seen_at" not in parent, parent
    spawned_at = {
        "lingerer": line_of("outer.start_soon(lingerer"),
        "started": line_of("await outer.start(started"),
        "returner": line_of("inner.start_soon(returner"),
        "doomed": line_of("inner.start_soon(doomed"),
        "raiser": line_of("inner.start_soon(raiser"),
    }
    for name, line in spawned_at.items():
        child = tasks[f"{name}-{round}"]
        # AND each child: its parent, when it was created (not merely first seen) and where
        assert child["parent"] == parent["id"], child
        assert child["created_at"] >= parent["created_at"], (child, parent)
        assert "first_seen_at" not in child, child
        assert origin(child) == ("parent", line), child
    # AND the pending ones are pending; the others say how they ended, after their creation
    assert tasks[f"lingerer-{round}"]["state"] == tasks[f"started-{round}"]["state"] == "pending"
    ended = {name: tasks[f"{name}-{round}"] for name in ("returner", "doomed", "raiser")}
    assert ended["returner"]["state"] == "done" and ended["returner"]["result"] == "42"
    assert ended["raiser"]["state"] == "failed", ended["raiser"]
    assert ended["raiser"]["exception"] == "ValueError('boom')", ended["raiser"]
    assert ended["doomed"]["state"] == "cancelled" and "exception" not in ended["doomed"]
    for task in ended.values():
        assert task["created_at"] <= task["finished_at"], task


def check_ps_stack_and_tree(target: Target, round: int, *, every_spawn_seen: bool) -> None:
    listing = run_cli("ps", "-a", str(target.pid)).stdout.splitlines()
    state_of = {line.split()[2]: line.split()[1] for line in listing if f"-{round} " in line}
    assert state_of[f"returner-{round}"] == "done", listing
    assert state_of[f"raiser-{round}"] == "failed", listing
    assert state_of[f"doomed-{round}"] == "cancelled", listing
    # AND ages of tasks whose creation was seen are ages, not lower bounds (≥)
    assert not any("≥" in line for line in listing if f"-{round} " in line), listing
    # AND `stack` shows where a pending one was created
    stack = run_cli("stack", str(target.pid), f"lingerer-{round}")
    assert stack.returncode == 0, stack.stderr
    created = stack.stdout.split("created from:")[1].split()
    assert created[:2] == ["parent", f"{TARGETS / 'trio_family.py'}:{line_of('(lingerer,')}"]
    tree = run_cli("tree", "-a", str(target.pid))
    assert tree.returncode == 0, tree.stderr
    under_parent = [line for line in tree.stdout.splitlines() if f"-{round} " in line]
    assert any("failed: ValueError('boom')" in line for line in under_parent), tree.stdout
    assert not any("≥" in line for line in under_parent), tree.stdout
    # AND it says which tasks predate the instrument (trio's own at least, unless the agent
    # was in the run from its start), not that no trio task's creator is known
    note = " trio tasks spawned before the agent watched their run at "
    assert (note not in tree.stdout) if every_spawn_seen else (note in tree.stdout), tree.stdout
    assert "not tracked" not in tree.stdout and "not known" not in tree.stdout


@pytest.mark.parametrize("how", [(), ("--install-before",)], ids=["run", "before"])
def test_trio_tasks_have_creators_and_a_history(start: Any, how: tuple[str, ...]) -> None:
    # GIVEN a trio program with the agent (`taskscope run`, or install() before trio.run),
    # whose run the agent has found and instrumented
    target = start("trio_family.py", *how, agent=not how).wait_ready()
    wait_for(lambda: "instrument on" in notes(target), what="the agent's instrument")
    # WHEN a parent task spawns children that return, fail, are cancelled, or stay
    spawn_round(target, 1)
    # THEN `dump` shows each one's creator, creation time and place, and how it ended
    check_family(dump(target), 1)
    # AND `ps -a` and `tree -a` show the finished ones with their states
    check_ps_stack_and_tree(target, 1, every_spawn_seen=RUN_STARTS_SEEN)
    # AND the program's output is what it is without the agent
    code, out, err = target.stop()
    assert code == 0, err
    assert (out, err) == (OUTPUT, OUTPUT)


def test_a_failed_trio_task_keeps_its_traceback(start: Any) -> None:
    # GIVEN a trio program under `taskscope run`, whose run the agent has instrumented
    target = start("trio_family.py").wait_ready()
    wait_for(lambda: "instrument on" in notes(target), what="the agent's instrument")
    # WHEN a task in a nursery fails two calls deep with an exception chained from another,
    # and the program goes on (the parent catches the group)
    spawn_round(target, 1)
    # THEN `dump`'s record of it has its traceback as Python prints it: the KeyError, then
    # the ValueError raised from it, through raiser, check_setting and lookup_setting
    path = TARGETS / "trio_family.py"

    def entry(function: str, source: str) -> list[str]:
        return [f'  File "{path}", line {line_of(source)}, in {function}', f"    {source}"]

    expected = [
        "Traceback (most recent call last):",
        *entry("lookup_setting", 'return {"depth": 3}[name]'),
        "KeyError: 'boom'",
        "",
        "The above exception was the direct cause of the following exception:",
        "",
        "Traceback (most recent call last):",
        *entry("raiser", 'check_setting("boom")'),
        *entry("check_setting", "return lookup_setting(name) + 1"),
        *entry("lookup_setting", "raise ValueError(name) from missing"),
        "ValueError: boom",
    ]
    raiser = by_name(dump(target))["raiser-1"]
    assert raiser["traceback"].splitlines() == expected, raiser
    # AND nothing about its exception being retrieved: trio always hands it to the nursery
    assert "exception_retrieved" not in raiser, raiser
    # AND `taskscope stack` prints it under the task's ending
    stack = run_cli("stack", str(target.pid), "raiser-1")
    assert stack.returncode == 0, stack.stderr
    lines = [line.rstrip() for line in stack.stdout.splitlines()]
    assert lines[0].endswith("finished: failed ValueError('boom')"), lines
    assert lines[1 : 1 + len(expected)] == [f"  {line}".rstrip() for line in expected], lines
    assert lines[1 + len(expected)] == "created from:", lines
    assert "retrieved" not in stack.stdout, stack.stdout
    # AND the program's output is what it is without the agent
    code, out, err = target.stop()
    assert code == 0, err
    assert (out, err) == (OUTPUT, OUTPUT)


@pytest.mark.skipif(
    not RUN_STARTS_SEEN,
    reason="3.11 has no sys.monitoring: the agent finds a trio run by looking for it",
)
@pytest.mark.parametrize("how", [(), ("--install-before",)], ids=["run", "before"])
def test_tasks_spawned_as_the_run_starts_have_creators(start: Any, how: tuple[str, ...]) -> None:
    # GIVEN a trio program whose main spawns its long-lived tasks (and a short one) as soon as
    # it starts, under `taskscope run` or with install() before `trio.run`
    target = start("trio_family.py", *how, agent=not how).wait_ready()
    # WHEN the user looks at it
    snap = dump(target)
    # THEN those tasks have their creator, creation time and place, as later ones do
    tasks = by_name(snap)
    main = tasks["__main__.main"]
    [loop] = snap["loops"]
    spawned_at = {
        "watcher": line_of("nursery.start_soon(watcher"),
        "started-early": line_of("nursery.start(started"),
    }
    for name, line in spawned_at.items():
        task = tasks[name]
        assert task["parent"] == main["id"], task
        assert origin(task) == ("main", line), task
        assert task["created_at"] and "first_seen_at" not in task, task
        assert loop["spawns_seen_since"] <= task["created_at"] + 0.001, (loop, task)
    # AND no task of the run predates the agent's instrument: trio's own and main's neither
    assert not [task for task in snap["tasks"] if "first_seen_at" in task], snap["tasks"]
    assert main["created_at"], main
    # AND the one that ended at once is in the history, created by main, with its result
    quick = tasks["quick-early"]
    assert (quick["state"], quick["result"]) == ("done", "'early'"), quick
    assert quick["parent"] == main["id"], quick
    assert origin(quick) == ("main", line_of("nursery.start_soon(quick")), quick
    # AND `tree` marks no age as a lower bound, and says of no task that it came before
    tree = run_cli("tree", "-a", str(target.pid))
    assert tree.returncode == 0, tree.stderr
    assert "≥" not in tree.stdout and "before the agent" not in tree.stdout, tree.stdout
    code, out, err = target.stop()
    assert code == 0, err
    assert (out, err) == (OUTPUT, OUTPUT)


@needs_attach
def test_trio_tasks_spawned_after_an_attach_have_creators_until_a_detach(start: Any) -> None:
    # GIVEN a trio program that never imported taskscope, then attached to by `dump`
    target = start("trio_family.py", agent=False).wait_ready()
    assert "instrument" not in notes(target)
    dump(target)
    wait_for(lambda: "instrument on" in notes(target), what="the agent's instrument")
    # WHEN tasks are spawned after the attach
    spawn_round(target, 1)
    # THEN they have their creators, and the finished ones their endings
    check_family(dump(target), 1)
    check_ps_stack_and_tree(target, 1, every_spawn_seen=False)
    # WHEN the user detaches
    result = run_cli("detach", str(target.pid))
    assert result.returncode == 0, result.stderr
    # THEN the instrument leaves trio's instrument list, and the program goes on as before
    wait_for(lambda: "instrument off" in notes(target), what="the instrument removed")
    spawn_round(target, 2)
    code, out, err = target.stop()
    assert code == 0, err
    assert (out, err) == (OUTPUT, OUTPUT)
    assert notes(target).count("instrument on") == 1, notes(target)


def test_no_instrument_while_tasks_are_not_tracked(start: Any) -> None:
    # GIVEN a trio program with the agent, tracking turned off, which has looked at the run
    target = start("trio_family.py", env={"TASKSCOPE_TRACK": "0"}).wait_ready()
    wait_for(lambda: dump(target)["loops"], what="the run found")
    # WHEN tasks are spawned and finish
    spawn_round(target, 1)
    # THEN trio's run got no instrument: no creators, no history, ages from the first look
    snap = dump(target)
    assert "spawns_seen_since" not in snap["loops"][0], snap["loops"]
    tasks = by_name(snap)
    assert "returner-1" not in tasks and tasks["lingerer-1"]["created_at"] is None, tasks
    assert tasks["lingerer-1"]["first_seen_at"], tasks["lingerer-1"]
    # AND the tree says trio creations are not tracked
    tree = run_cli("tree", str(target.pid)).stdout
    assert "trio creations are not tracked (track_tasks off)" in tree, tree
    code, out, err = target.stop()
    assert code == 0, err
    assert "instrument on" not in notes(target)
    assert (out, err) == (OUTPUT, OUTPUT)
