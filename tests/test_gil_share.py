"""The agent's share of the GIL (`taskscope.agent.gil`): a loop busy in steps shorter than the
switch interval keeps the agent's thread from the GIL; the agent lowers the interval (from the
default only), says so in the snapshot, and puts it back. Real programs, attached or started
with the agent; and the rules themselves, in this process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskscope.agent import gil
from taskscope.agent.gil import DEFAULT_INTERVAL, LOWERED_INTERVAL, RELEASE_AFTER, GilShare
from taskscope.attach import looks_starved, threads_ran
from taskscope.protocol.slicing import give_way
from tests.helpers import Target, notes, run_cli, wait_for

needs_attach = pytest.mark.skipif(
    shutil.which("gdb") is None and sys.version_info < (3, 14),
    reason="attaching to Python 3.11-3.13 needs gdb (apt-get install gdb)",
)


def intervals(target: Target) -> list[float]:
    """The switch intervals the target noted, in order (its first, then each change), to the
    microsecond (CPython keeps microseconds: 5e-05 reads back as 4.9999999999999996e-05)."""
    return [
        round(float(line.split()[1]), 6)
        for line in notes(target).splitlines()
        if line.startswith("interval ")
    ]


def dump(pid: int, within: float = 60.0) -> dict[str, Any]:
    result = run_cli("dump", "--timeout", str(within), str(pid), timeout=within + 30)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@needs_attach
def test_an_agent_attached_to_a_busy_loop_answers_lowers_the_interval_and_puts_it_back(
    start: Any,
) -> None:
    # GIVEN a program that never imported taskscope, its loop busy in steps of 4 ms
    target = start("busy_steps.py", "4", agent=False).wait_ready()
    wait_for(lambda: intervals(target) == [DEFAULT_INTERVAL], 10, "the program's interval")
    # WHEN the user dumps its tasks (the agent injected), and looks twice more
    # (each answered within 30 s: 0.4-2.4 s here; before the lowering, 22-71 s or never)
    snapshots = [dump(target.pid, within=30)]
    assert [t["name"] for t in snapshots[0]["tasks"] if t["state"] == "pending"].count("busy")
    for _ in range(2):
        time.sleep(0.5)
        snapshots.append(dump(target.pid, within=30))
    # THEN the agent says it was kept from the GIL, and that it holds the interval at 50 µs:
    # the program saw its interval lowered, by nobody else. (On a quiet machine the start-up
    # is starved and the first look says so, every run here; on a loaded one the scheduler
    # may hand the GIL over often enough that the agent is never starved, and lowers nothing.)
    lowered = [
        snapshot["gil_wait"]
        for snapshot in snapshots
        if (snapshot.get("gil_wait") or {}).get("lowered_to") is not None
    ]
    for wait in lowered:
        assert (wait["lowered_from"], wait["lowered_to"]) == (DEFAULT_INTERVAL, LOWERED_INTERVAL)
        assert wait["longest"] >= gil.STARTUP_STARVED_AFTER
    if lowered:
        wait_for(lambda: LOWERED_INTERVAL in intervals(target), 10, "the lowered interval")
        # AND `ps` says it in words
        listing = run_cli("ps", str(target.pid), timeout=60)
        assert listing.returncode == 0, listing.stderr
        assert "the agent was kept from the GIL for up to" in listing.stdout
        assert "it holds the switch interval at 50 µs (from 5 ms) while it needs to" in (
            listing.stdout
        )
    # WHEN the agent is detached
    detached = run_cli("detach", str(target.pid), timeout=60)
    assert detached.returncode == 0, detached.stderr
    # THEN the program has its own interval back, and goes on to its normal end
    wait_for(lambda: intervals(target)[-1] == DEFAULT_INTERVAL, 10, "the interval put back")
    assert set(intervals(target)) <= {DEFAULT_INTERVAL, LOWERED_INTERVAL}
    code, _out, err = target.stop()
    assert code == 0, err


@needs_attach
def test_a_program_that_chose_its_switch_interval_keeps_it(start: Any) -> None:
    # GIVEN a busy program that set its own switch interval (3 ms)
    target = start("busy_steps.py", "4", "0.003", agent=False).wait_ready()
    wait_for(lambda: intervals(target) == [0.003], 10, "the program's interval")
    # WHEN the user dumps its tasks twice, then detaches
    for _ in range(2):
        snapshot = dump(target.pid)
        assert "lowered_to" not in snapshot.get("gil_wait", {}) or (
            snapshot["gil_wait"]["lowered_to"] is None
        )
    assert run_cli("detach", str(target.pid), timeout=60).returncode == 0
    # THEN its interval was never changed
    code, _out, err = target.stop()
    assert code == 0, err
    assert intervals(target) == [0.003]


def test_an_agent_started_with_the_program_answers_a_busy_loop_lowering_the_interval_if_starved(
    start: Any,
) -> None:
    # GIVEN a busy program started with the agent (`python -m taskscope.agent.launch`)
    target = start("busy_steps.py", "4").wait_ready()
    # WHEN the user looks three times, a second apart
    snapshots = []
    for _ in range(3):
        # each answered within 20 s (0.1-0.8 s here; the code before this took 23 s or more)
        snapshots.append(dump(target.pid, within=20))
        time.sleep(1)
    # THEN a wait long enough to be starvation went with the interval lowered, which the
    # program saw. On a quiet machine the loop starves the agent within a second (every run
    # on 3.11-3.15 here); without the lowering the looks above take 23 s or time out. On a
    # loaded one the scheduler may take the CPU from the loop often enough that the agent
    # never waits that long, and has nothing to lower: then every look was answered all the
    # same, which is what the user needs.
    # The starvation may also come after the last look: a look after the program saw the
    # interval lowered must say both.
    if LOWERED_INTERVAL in intervals(target):
        snapshots.append(dump(target.pid, within=20))
    waits = [snapshot["gil_wait"] for snapshot in snapshots if "gil_wait" in snapshot]
    starved = [wait for wait in waits if (wait["longest"] or 0) >= gil.STARVED_AFTER]
    assert all(
        (wait["lowered_from"], wait["lowered_to"]) == (DEFAULT_INTERVAL, LOWERED_INTERVAL)
        for wait in starved
    ), waits
    if starved or LOWERED_INTERVAL in intervals(target):
        assert starved, waits
        wait_for(lambda: LOWERED_INTERVAL in intervals(target), 10, "the lowered interval")
    code, _out, err = target.stop()
    assert code == 0, err


def test_a_trio_run_busy_in_short_steps_under_its_own_agent_is_answered(start: Any) -> None:
    pytest.importorskip("trio", reason="needs trio (pip install trio)")
    # GIVEN a trio run busy in steps of 4 ms, started with the agent: no asyncio loop's
    # heartbeat sees the agent's thread starved (a trio run's heartbeat is sent by that thread)
    target = start("trio_busy_steps.py", "4").wait_ready()
    wait_for(lambda: intervals(target)[:1] == [DEFAULT_INTERVAL], 10, "the program's interval")
    time.sleep(1)
    # WHEN the user looks twice
    # (each answered within 10 s: 0.03-1.8 s here; before, the first took 19-31 s or never came:
    # the agent's thread, starved, found out only at its first wait's end, or the client's
    # hint, `attach.hint_starved_agent`, had it check from the program's main thread)
    looks = [dump(target.pid, within=10) for _ in range(2)]
    # THEN the busy task is there, and when the agent was starved it says so, holding the
    # interval lowered, which the program saw
    assert [task["name"] for task in looks[0]["tasks"]].count("busy") == 1
    wait = looks[-1].get("gil_wait") or {}
    if (wait.get("lowered_to") is not None) or LOWERED_INTERVAL in intervals(target):
        assert (wait["lowered_from"], wait["lowered_to"]) == (DEFAULT_INTERVAL, LOWERED_INTERVAL)
        assert wait["longest"] >= gil.STARVED_AFTER
        wait_for(lambda: LOWERED_INTERVAL in intervals(target), 10, "the lowered interval")
    code, _out, err = target.stop()
    assert code == 0, err


def test_the_hint_is_given_only_when_the_main_thread_alone_ran() -> None:
    pid, agent = 100, 101

    def verdict(before: dict[int, float], after: dict[int, float]) -> bool | None:
        return looks_starved(threads_ran(pid, before, after))

    # the main thread ran the whole window, the agent's not at all: starved, hint now
    assert verdict({pid: 1.0, agent: 0.2}, {pid: 1.25, agent: 0.2}) is True
    # the agent's thread ran half the window or more (a long first look): give up at once
    assert verdict({pid: 1.0, agent: 0.2}, {pid: 1.1, agent: 0.35}) is False
    # the agent's thread ran a little (starved, it still runs now and then): another window
    assert verdict({pid: 1.0, agent: 0.2}, {pid: 1.25, agent: 0.26}) is None
    # the main thread idle (blocked in a system call, or waiting): another window
    assert verdict({pid: 1.0, agent: 0.2}, {pid: 1.02, agent: 0.2}) is None
    # no other thread (no agent's thread to be starved), or no main thread: give up
    assert verdict({pid: 1.0}, {pid: 1.25}) is False
    assert verdict({}, {agent: 1.25}) is False


@pytest.fixture
def cpu_burners() -> Iterator[None]:
    """One process spinning per CPU and one more: every thread that wants a CPU queues for it."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range((os.cpu_count() or 1) + 1)
    ]
    try:
        time.sleep(0.5)
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


@needs_attach
def test_an_idle_program_attached_on_a_loaded_machine_keeps_its_interval(
    start: Any, cpu_burners: None
) -> None:
    # GIVEN an idle program (it looks at the world every 50 ms), and a machine whose CPUs are
    # all busy with other processes: the agent's start-up waits for a CPU 30-60 ms
    target = start("busy_steps.py", "0", agent=False).wait_ready()
    wait_for(lambda: intervals(target) == [DEFAULT_INTERVAL], 10, "the program's interval")
    # WHEN the user dumps its tasks (the agent injected)
    snapshot = dump(target.pid)
    # THEN the agent was not starved (waiting for a CPU is not waiting for the GIL): it put
    # back the program's interval as soon as it started (the injection lowers it for the
    # start-up, which the program may see), and says nothing of the GIL
    assert [task["name"] for task in snapshot["tasks"]].count("busy") == 1
    assert snapshot.get("gil_wait") is None, snapshot["gil_wait"]
    listing = run_cli("ps", str(target.pid), timeout=60)
    assert listing.returncode == 0 and "GIL" not in listing.stdout, listing.stdout
    wait_for(lambda: intervals(target)[-1] == DEFAULT_INTERVAL, 10, "the interval put back")
    code, _out, err = target.stop()
    assert code == 0, err
    assert intervals(target)[-1] == DEFAULT_INTERVAL


def test_a_call_that_holds_the_gil_is_said_but_does_not_lower_the_interval(start: Any) -> None:
    # GIVEN a program with the agent whose loop thread then holds the GIL in one C call 2 s
    target = start("gil_hog.py", "2").wait_ready()
    target.file(f"hog-{target.pid}").write_text("hog")
    wait_for(lambda: "released" in notes(target), 20, "the call's end")
    # WHEN the user looks afterwards
    snapshot = dump(target.pid)
    # THEN the agent says how long it was kept from the GIL, and left the interval alone: no
    # loop turned meanwhile, and a shorter interval would not have ended the call sooner
    wait = snapshot["gil_wait"]
    assert wait["longest"] >= 1.0
    assert wait["lowered_to"] is None and wait["lowered_from"] is None
    code, _out, err = target.stop()
    assert code == 0, err


# --- the rules, in this process -----------------------------------------------------------


@pytest.fixture
def interval() -> Iterator[None]:
    """This process's switch interval is the default for the test, and put back after it."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(DEFAULT_INTERVAL)
    yield
    sys.setswitchinterval(before)


def test_a_start_up_that_was_not_starved_gives_the_interval_back_at_once(interval: None) -> None:
    share = GilShare()
    sys.setswitchinterval(LOWERED_INTERVAL)  # as the injected code did
    share.adopt(DEFAULT_INTERVAL, waited=0.002)
    assert sys.getswitchinterval() == pytest.approx(DEFAULT_INTERVAL)
    assert share.facts() is None


def test_a_starved_start_up_keeps_it_while_clients_come_and_then_releases_it(
    interval: None,
) -> None:
    share = GilShare()
    sys.setswitchinterval(LOWERED_INTERVAL)
    share.adopt(DEFAULT_INTERVAL, waited=0.4)
    assert share.facts() == {
        "longest": 0.4,
        "at": share.longest_at,
        "lowered_from": DEFAULT_INTERVAL,
        "lowered_to": LOWERED_INTERVAL,
    }
    now = gil.time.monotonic()
    share.tick(now + RELEASE_AFTER + 1, clients=1)  # a client connected: kept
    assert sys.getswitchinterval() == pytest.approx(LOWERED_INTERVAL)
    share.tick(now + 2 * RELEASE_AFTER, clients=0)  # too soon after that client
    assert sys.getswitchinterval() == pytest.approx(LOWERED_INTERVAL)
    share.tick(now + 3 * RELEASE_AFTER + 2, clients=0)
    assert sys.getswitchinterval() == pytest.approx(DEFAULT_INTERVAL)
    facts = share.facts()
    assert facts is not None and facts["lowered_to"] is None and facts["longest"] == 0.4


def test_only_a_late_wait_lowers_it_and_never_from_a_programs_value(interval: None) -> None:
    share = GilShare()
    share.waited(asked=0.25, took=0.3)  # 50 ms late: scheduling, not starvation
    assert sys.getswitchinterval() == pytest.approx(DEFAULT_INTERVAL)
    sys.setswitchinterval(0.002)  # the program's choice
    share.waited(asked=0.25, took=2.0)
    assert sys.getswitchinterval() == pytest.approx(0.002)
    facts = share.facts()
    assert facts is not None and facts["longest"] == 1.75 and facts["lowered_to"] is None
    sys.setswitchinterval(DEFAULT_INTERVAL)
    share.waited(asked=0.25, took=1.0)
    assert sys.getswitchinterval() == pytest.approx(LOWERED_INTERVAL)


def test_a_late_wait_while_no_loop_turned_is_noted_only(interval: None) -> None:
    share = GilShare()
    share.waited(asked=0.25, took=2.25, loops_turned=False)
    assert sys.getswitchinterval() == pytest.approx(DEFAULT_INTERVAL)
    facts = share.facts()
    assert facts is not None and facts["longest"] == 2.0 and facts["lowered_to"] is None


def test_a_loops_heartbeat_finds_the_agent_thread_starved_past_the_time_it_said(
    interval: None,
) -> None:
    share = GilShare()
    now = gil.time.monotonic()
    share.expect_back(now + 1.0)  # waiting in its selector for a second
    share.beat(now + 0.9, now + 1.05)  # a beat a moment after: nothing yet
    assert sys.getswitchinterval() == pytest.approx(DEFAULT_INTERVAL)
    share.beat(now + 0.5, now + 3.0)  # the loop's first beat since: it was blocked meanwhile
    assert sys.getswitchinterval() == pytest.approx(DEFAULT_INTERVAL)
    give_way()  # a look that just gave the GIL away moves, however late
    share.beat(now + 2.75, now + 3.0)
    assert sys.getswitchinterval() == pytest.approx(DEFAULT_INTERVAL)
    gil.time.sleep(2 * gil.STARVED_AFTER)
    share.beat(now + 2.75, now + 3.0)  # 2 s past, the loop turning, no give-way: starved
    assert sys.getswitchinterval() == pytest.approx(LOWERED_INTERVAL)
    facts = share.facts()
    assert facts is not None and facts["longest"] == 2.0
    share.expect_back(None)  # a thread that stopped
    share.restore()
    share.beat(now + 99.75, now + 100.0)
    assert sys.getswitchinterval() == pytest.approx(DEFAULT_INTERVAL)


def test_putting_it_back_leaves_a_value_the_program_set_meanwhile(interval: None) -> None:
    share = GilShare()
    share.waited(asked=0.0, took=1.0)
    assert sys.getswitchinterval() == pytest.approx(LOWERED_INTERVAL)
    sys.setswitchinterval(0.02)  # the program changes it while the agent holds it
    share.restore()
    assert sys.getswitchinterval() == pytest.approx(0.02)
    assert share.facts() is not None and share.facts()["lowered_to"] is None  # type: ignore[index]
