"""How long a task has waited where it is, without timing steps: the agent's looks note the
first one that found each task on the future it waits on (`waiting_seen_at`), and `ps`,
`tree` and the dashboard say how long ago that was. Real processes, real looks."""

from __future__ import annotations

import re
import time
from typing import Any

from taskscope.model import TaskInfo
from taskscope.words import WAIT_BOUND_NOTE
from tests.helpers import agent_snapshot, by_name, notes, run_cli, wait_for

#: Tasks that stay where they are until the test moves them (`bounded` and `timed` wait with a
#: deadline: `wait_for`'s chain is described afresh at each look, and still has a wait).
STILL = ("stuck", "worker", "holder", "bounded", "timed")


def look_after(pid: int, taken_at: float) -> dict[str, Any]:
    """A look taken after `taken_at` (the agent hands a snapshot under a second old to the
    next request again)."""

    def fresh() -> dict[str, Any] | None:
        snap = agent_snapshot(pid)
        return snap if snap["taken_at"] > taken_at else None

    return wait_for(fresh, what="a new look")  # type: ignore[no-any-return]


def test_a_wait_counts_from_the_first_look_that_found_the_task_on_its_future(start: Any) -> None:
    target = start("waits_seen.py").wait_ready()
    first = agent_snapshot(target.pid)
    seen = by_name(first)
    for name in STILL:
        assert seen[name]["waiting_seen_at"] == first["taken_at"], seen[name]

    second = look_after(target.pid, first["taken_at"])
    again = by_name(second)
    for name in STILL:  # none of them moved: the first look's time stays
        assert again[name]["waiting_seen_at"] == first["taken_at"], again[name]
    # The feeder wakes every 20 ms: at each look it waits on a new sleep (or runs).
    assert again["feeder"].get("waiting_seen_at") != first["taken_at"], again["feeder"]

    target.file(f"feed-{target.pid}").write_text("one")
    wait_for(lambda: "took 1" in notes(target), what="the worker to take the item")
    third = look_after(target.pid, second["taken_at"])
    moved = by_name(third)
    # The worker took an item and waits on the queue again: the same words, a new wait.
    assert moved["worker"]["awaiting"]["text"] == seen["worker"]["awaiting"]["text"]
    assert moved["worker"]["waiting_seen_at"] == third["taken_at"], moved["worker"]
    assert moved["stuck"]["waiting_seen_at"] == first["taken_at"]
    assert moved["holder"]["waiting_seen_at"] == first["taken_at"]

    # What a client makes of it: a lower bound, from the look that found it there.
    worker = TaskInfo.from_wire(moved["worker"], third["taken_at"])
    assert worker.known_wait(third["taken_at"] + 2.5) == (2.5, True)
    stuck = TaskInfo.from_wire(moved["stuck"], third["taken_at"])
    assert stuck.known_wait(first["taken_at"] + 60.0) == (60.0, True)


def _wait_cell(line: str) -> float:
    match = re.search(r"≥(\d+\.\d)s\s+\S+\.wait|≥(\d+\.\d)s", line)
    assert match, line
    return float(match.group(1) or match.group(2))


def test_ps_and_tree_say_how_long_each_task_has_waited_where_it_is(start: Any) -> None:
    target = start("waits_seen.py").wait_ready()
    first = agent_snapshot(target.pid)["taken_at"]
    # A first look finds every task waiting "≥0s": nothing is said of it yet.
    look = run_cli("ps", str(target.pid))
    assert look.returncode == 0, look.stderr
    wait_for(lambda: time.time() - first > 1.5, what="a second and a half")

    before = time.time()
    table = run_cli("ps", str(target.pid))
    after = time.time()
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    head = next(line for line in lines if line.startswith("ID"))
    assert "WAITED" in head.split(), table.stdout
    column = head.index("WAITED")
    rows = {line.split()[2]: line for line in lines if re.match(r"\d+\s+pending", line)}
    stuck = rows["stuck"][column:].split()[0]
    assert stuck.startswith("≥"), rows["stuck"]
    waited = float(stuck[1:].rstrip("s"))
    assert before - first - 0.1 <= waited <= after - first + 0.1, (waited, before - first)
    assert "Event.wait" in rows["stuck"] and "Lock.acquire" in rows["holder"], table.stdout
    assert WAIT_BOUND_NOTE in lines, table.stdout

    tree = run_cli("tree", str(target.pid))
    assert tree.returncode == 0, tree.stderr
    stuck_line = next(line for line in tree.stdout.splitlines() if "stuck" in line)
    assert re.search(r"awaiting Event\.wait .*, for ≥\d+\.\ds", stuck_line), stuck_line
    assert _wait_cell(stuck_line) >= before - first - 0.1
    assert WAIT_BOUND_NOTE in tree.stdout.splitlines(), tree.stdout


def test_after_the_worker_moves_its_wait_starts_over_and_the_others_go_on(start: Any) -> None:
    target = start("waits_seen.py").wait_ready()
    first = agent_snapshot(target.pid)["taken_at"]
    wait_for(lambda: time.time() - first > 1.2, what="a second")
    target.file(f"feed-{target.pid}").write_text("one")
    wait_for(lambda: "took 1" in notes(target), what="the worker to take the item")
    moved_at = look_after(target.pid, first)["taken_at"]
    wait_for(lambda: time.time() - moved_at > 1.2, what="another second")

    table = run_cli("ps", str(target.pid))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    column = next(line for line in lines if line.startswith("ID")).index("WAITED")
    rows = {line.split()[2]: line for line in lines if re.match(r"\d+\s+pending", line)}
    worker = float(rows["worker"][column:].split()[0].strip("≥s"))
    stuck = float(rows["stuck"][column:].split()[0].strip("≥s"))
    # The worker's wait counts from the look after it moved, the stuck task's from the first.
    assert 1.1 <= worker < stuck - 1.0, table.stdout

    # --sort waited: the longest waiting where they are first, the worker after them.
    ordered = run_cli("ps", "--sort", "waited", str(target.pid))
    assert ordered.returncode == 0, ordered.stderr
    names = [
        line.split()[2] for line in ordered.stdout.splitlines() if re.match(r"\d+\s+pending", line)
    ]
    # (On 3.11 wait_for runs what it waits for as a task of its own, which waits as long.)
    still = [names.index(name) for name in ("stuck", "holder", "bounded", "timed")]
    assert max(still) < names.index("worker") < names.index("feeder"), ordered.stdout


def test_tasks_older_than_the_agent_never_wait_longer_than_their_age(start: Any) -> None:
    # GIVEN twelve tasks made before the agent came: the first look meets each of them
    # (and makes its metadata) one after the other, while the look goes on
    target = start("older_than_agent.py", agent=False).wait_ready()
    first = agent_snapshot(target.pid)
    workers = [task for task in first["tasks"] if task["name"].startswith("worker-")]
    assert len(workers) == 12
    # THEN each one's age and wait both count from that look, the same moment
    for task in workers:
        assert task["first_seen_at"] == task["waiting_seen_at"] == first["taken_at"], task
    # AND later, as a user reads them, no wait is longer than the task's age
    wait_for(lambda: time.time() - first["taken_at"] > 1.2, what="a second")
    later = look_after(target.pid, first["taken_at"])
    now = later["taken_at"]
    for raw in later["tasks"]:
        if raw["name"].startswith("worker-"):
            task = TaskInfo.from_wire(raw, now)
            wait, _bound = task.known_wait(now)
            age, _bound = task.known_age(now)
            assert wait is not None and age is not None and wait <= age, raw
