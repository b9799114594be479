"""Lock holders, failed tasks' tracebacks and whether their exception was retrieved, against
real processes: started with the agent (what `taskscope run` does) and attached to later."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.summary import exception_line, safe_repr
from taskscope.agent.tracker import CREATION_DEPTH, Tracker
from taskscope.cli.exits import EXIT_WARNINGS
from taskscope.words import schema_text
from tests.helpers import REPO, TARGETS, agent_snapshot, by_name, notes, run_cli, wait_for

# --- lock holders ---------------------------------------------------------------------------


def _deadlocked_snapshot(pid: int) -> dict[str, Any]:
    """A snapshot in which both transfers wait for a lock: a look younger than its cost allows
    (server.MAX_SNAPSHOT_REUSE), taken before the deadlock formed, may be served again."""
    found: dict[str, Any] = {}

    def both_wait() -> bool:
        found.update(by_name(agent_snapshot(pid)))
        return all(
            (found.get(name, {}).get("awaiting") or {}).get("kind") == "lock"
            for name in ("transfer-a", "transfer-b")
        )

    wait_for(both_wait, what="both transfers waiting for a lock")
    return found


def _assert_deadlock_holders(pid: int, made_before_the_agent: bool = False) -> None:
    tasks = _deadlocked_snapshot(pid)
    a, b = tasks["transfer-a"], tasks["transfer-b"]
    # the creation chain: the function that called create_task, then its caller
    for task in (a, b):
        chain = [frame["function"] for frame in task.get("created_from", ())]
        assert chain == ([] if made_before_the_agent else ["deadlock", "main"])
    for waiter, holder in ((a, b), (b, a)):
        awaiting = waiter["awaiting"]
        assert awaiting["kind"] == "lock" and awaiting["call"] == "Lock.acquire"
        facts = awaiting["object"]
        assert facts["locked"] is True
        assert facts["holders"] == [holder["id"]]
        assert facts["holder_names"] == [holder["name"]]
        assert "holders_unknown" not in facts
        assert awaiting["text"].endswith(f"held by {holder['name']}")
    # THEN the command line says who holds each lock
    for command in ("tree", "ps"):
        out = run_cli(command, str(pid)).stdout
        # both call their lock `theirs`: told apart by a letter
        held_by_b = re.search(r"\(Lock ([AB]), locked, 1 waiting\), held by transfer-b", out)
        held_by_a = re.search(r"\(Lock ([AB]), locked, 1 waiting\), held by transfer-a", out)
        assert held_by_a and held_by_b, out
        assert held_by_a[1] != held_by_b[1], out


def test_a_two_lock_deadlock_names_each_locks_holder(start: Any) -> None:
    # GIVEN two tasks deadlocked on two locks, in a program run with the agent
    target = start("lock_deadlock.py").wait_ready()
    # THEN each waits on a lock held by the other
    _assert_deadlock_holders(target.pid)
    code, _out, err = target.stop()
    assert code == 0, err
    assert "Lock class has _locked: True" in notes(target)
    assert "loop has call_exception_handler: True" in notes(target)


def test_holders_are_known_for_locks_taken_after_an_attach_and_detach_restores_lock(
    start: Any,
) -> None:
    # GIVEN a program without the agent, which takes its locks only when told
    target = start("lock_deadlock.py", "on-go", agent=False).wait_ready()
    # WHEN taskscope attaches (loading the agent), then the deadlock forms
    assert run_cli("dump", str(target.pid)).returncode == 0
    target.file(f"go-{target.pid}").write_text("go")
    wait_for(lambda: "deadlocked" in notes(target), what="the deadlock")
    # THEN each lock's holder is known
    _assert_deadlock_holders(target.pid)
    # AND after a detach, asyncio.Lock has nothing of the agent's
    assert run_cli("detach", str(target.pid)).returncode == 0
    code, _out, err = target.stop()
    assert code == 0, err
    assert "Lock class has _locked: False" in notes(target)
    assert "loop has call_exception_handler: False" in notes(target)


def test_holders_of_locks_taken_before_the_agent_are_found_in_the_tasks_stacks(
    start: Any,
) -> None:
    # GIVEN a deadlock formed with `async with` before taskscope attached
    target = start("lock_deadlock.py", agent=False).wait_ready()
    assert run_cli("dump", str(target.pid)).returncode == 0  # the attach
    # THEN each lock's holder is the task in the body of its `async with`
    _assert_deadlock_holders(target.pid, made_before_the_agent=True)
    # AND the deadlock is a warning
    lint = run_cli("lint", str(target.pid)).stdout
    assert re.search(
        r"^lock deadlock: transfer-([ab]) holds Lock A and waits for Lock B, held by "
        r"transfer-(?!\1)[ab], which waits for Lock A$",
        lint,
        re.MULTILINE,
    ), lint


def test_locks_taken_with_acquire_before_the_agent_have_an_unknown_holder(start: Any) -> None:
    # GIVEN a deadlock formed with acquire() before taskscope attached: no stack tells
    target = start("lock_deadlock.py", "by-acquire", agent=False).wait_ready()
    tasks = by_name(json.loads(run_cli("dump", str(target.pid)).stdout))
    facts = tasks["transfer-a"]["awaiting"]["object"]
    # THEN the holder is said to be unknown, not guessed
    assert facts["locked"] is True
    assert facts["holders"] == [] and facts["holders_unknown"] is True
    tree = run_cli("tree", str(target.pid)).stdout
    assert re.search(
        r"\(Lock [AB], locked, 1 waiting\), taken before taskscope attached \(holder unknown\)",
        tree,
    ), tree


def test_a_stack_search_finds_the_holder_in_the_body_not_one_entering_or_waiting() -> None:
    # GIVEN locks and a Condition taken before the agent was installed: a task in the body of
    # `async with` two coroutines deep, one waiting to enter, one in `Condition.wait` (which
    # released the lock), another in the Condition's body, and a lock taken with acquire()
    tracker = Tracker()

    async def hold(lock: asyncio.Lock, release: asyncio.Event) -> None:
        async with lock:
            await release.wait()

    async def nested_holder(lock: asyncio.Lock, release: asyncio.Event) -> None:
        await hold(lock, release)

    async def enter(lock: asyncio.Lock | asyncio.Condition) -> None:
        async with lock:
            pass

    async def wait_on(cond: asyncio.Condition) -> None:
        async with cond:
            await cond.wait()

    async def hold_by_acquire(lock: asyncio.Lock, release: asyncio.Event) -> None:
        await lock.acquire()
        try:
            await release.wait()
        finally:
            lock.release()

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        release = asyncio.Event()
        lock, cond, plain = asyncio.Lock(), asyncio.Condition(), asyncio.Lock()
        made = [asyncio.create_task(nested_holder(lock, release), name="holder")]
        made.append(asyncio.create_task(wait_on(cond), name="cond-waiter"))
        made.append(asyncio.create_task(hold_by_acquire(plain, release), name="by-acquire"))
        await asyncio.sleep(0)  # the three took their locks; cond-waiter gave its lock back
        made.append(asyncio.create_task(hold(cond, release), name="cond-holder"))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        made.append(asyncio.create_task(enter(lock), name="entering"))
        made.append(asyncio.create_task(enter(cond), name="cond-entering"))
        made.append(asyncio.create_task(enter(plain), name="plain-entering"))
        await asyncio.sleep(0)
        tracker.install()
        try:
            first = await asyncio.to_thread(SnapshotBuilder(tracker).build)
            again = await asyncio.to_thread(SnapshotBuilder(tracker).build)
        finally:
            release.set()
            async with cond:
                cond.notify_all()
            await asyncio.gather(*made)
        return first, again

    try:
        first, again = asyncio.run(main())
    finally:
        tracker.uninstall()
    for snapshot in (first, again):
        tasks = by_name(snapshot)
        # THEN the holder is the task in the body, however deep, not the one entering
        assert tasks["entering"]["awaiting"]["object"]["holder_names"] == ("holder",)
        # AND a Condition's lock is held by the task in its body, not by one in wait()
        cond_facts = tasks["cond-entering"]["awaiting"]["object"]
        assert cond_facts["holder_names"] == ("cond-holder",), cond_facts
        # AND a lock taken with acquire() has an unknown holder
        plain_facts = tasks["plain-entering"]["awaiting"]["object"]
        assert plain_facts["holders_unknown"] is True and plain_facts["holders"] == ()


def test_an_exhausted_semaphores_holders_are_the_tasks_in_its_body(start: Any) -> None:
    # GIVEN a pool (a BoundedSemaphore of 3) exhausted by two tasks in `async with pool:` and
    # one that took a permit with acquire(), and two requests waiting, attached to afterwards
    target = start("semaphore_pool.py", agent=False).wait_ready()
    tasks = by_name(json.loads(run_cli("dump", str(target.pid)).stdout))
    # THEN the waiters' semaphore names the two holders its stacks show, and counts the other
    facts = tasks["request-0"]["awaiting"]["object"]
    assert facts["value"] == 0 and facts["waiters"] == 2
    assert sorted(facts["holder_names"]) == ["conn-0", "conn-1"]
    assert facts["holders"] == [tasks[name]["id"] for name in facts["holder_names"]]
    assert facts["holders_more"] == 1 and "holders_partial" not in facts
    tree = run_cli("tree", str(target.pid)).stdout
    assert re.search(r"\(value 0, 2 waiting\), held by conn-[01], conn-[01] and 1 more", tree)
    # AND no deadlock is said of a semaphore whose holders are not all known
    assert "deadlock" not in run_cli("lint", str(target.pid)).stdout


def test_a_plain_semaphores_holders_may_be_more_than_the_stacks_show() -> None:
    # GIVEN a Semaphore (its number of permits not kept) exhausted by two tasks in its body
    tracker = Tracker()

    async def hold(gate: asyncio.Semaphore, release: asyncio.Event) -> None:
        async with gate:
            await release.wait()

    async def main() -> dict[str, Any]:
        gate, release = asyncio.Semaphore(2), asyncio.Event()
        made = [asyncio.create_task(hold(gate, release), name=f"holder-{i}") for i in range(2)]
        await asyncio.sleep(0)
        made.append(asyncio.create_task(hold(gate, release), name="waiter"))
        await asyncio.sleep(0)
        tracker.install()
        try:
            return await asyncio.to_thread(SnapshotBuilder(tracker).build)
        finally:
            release.set()
            await asyncio.gather(*made)

    try:
        snapshot = asyncio.run(main())
    finally:
        tracker.uninstall()
    awaiting = by_name(snapshot)["waiter"]["awaiting"]
    # THEN both are named, and others may hold permits too (taken with acquire())
    assert sorted(awaiting["object"]["holder_names"]) == ["holder-0", "holder-1"]
    assert awaiting["object"]["holders_partial"] is True
    assert re.fullmatch(
        r"Semaphore\.acquire on gate \(value 0, 1 waiting\), held by holder-[01], holder-[01], "
        r"maybe more",
        schema_text(awaiting),
    )


def test_between_two_searches_a_look_checks_the_holders_it_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a BoundedSemaphore(2) held by a and b in its body, c and d waiting to enter
    from taskscope.agent import locks as holder_notes

    tracker = Tracker()

    async def hold(gate: asyncio.BoundedSemaphore, release: asyncio.Event) -> None:
        async with gate:
            await release.wait()

    async def main() -> list[dict[str, Any]]:
        gate = asyncio.BoundedSemaphore(2)
        releases = {name: asyncio.Event() for name in "abcd"}
        made = [asyncio.create_task(hold(gate, releases[name]), name=name) for name in "abcd"]
        await asyncio.sleep(0)
        tracker.install()
        looks = []
        try:
            looks.append(await asyncio.to_thread(SnapshotBuilder(tracker).build))
            # WHEN a leaves and c enters, within the time between two searches
            releases["a"].set()
            await asyncio.sleep(0.05)
            looks.append(await asyncio.to_thread(SnapshotBuilder(tracker).build))
            # AND once a search is due again
            monkeypatch.setattr(holder_notes, "SEARCH_SEMAPHORE_AGAIN_AFTER", 0.0)
            looks.append(await asyncio.to_thread(SnapshotBuilder(tracker).build))
        finally:
            for release in releases.values():
                release.set()
            await asyncio.gather(*made)
        return looks

    try:
        looks = asyncio.run(main())
    finally:
        tracker.uninstall()
    facts = [by_name(look)["d"]["awaiting"]["object"] for look in looks]
    # THEN the first look found a and b
    assert sorted(facts[0]["holder_names"]) == ["a", "b"] and "holders_more" not in facts[0]
    # AND the next one, checking those two alone, says b and one permit no stack showed it
    assert facts[1]["holder_names"] == ("b",) and facts[1]["holders_more"] == 1
    # AND the next search finds c
    assert sorted(facts[2]["holder_names"]) == ["b", "c"] and "holders_more" not in facts[2]


def test_lock_holders_can_be_turned_off(start: Any) -> None:
    # GIVEN a program run with the agent, lock holders turned off
    target = start("lock_deadlock.py", env={"TASKSCOPE_LOCK_HOLDERS": "0"}).wait_ready()
    facts = by_name(agent_snapshot(target.pid))["transfer-a"]["awaiting"]["object"]
    # THEN nothing is said of holders, and asyncio.Lock was never touched
    assert facts["locked"] is True
    assert "holders" not in facts and "holders_unknown" not in facts
    target.stop()
    assert "Lock class has _locked: False" in notes(target)


def test_locks_behave_the_same_with_the_agent(tmp_path: Any) -> None:
    # GIVEN a stress of locks, conditions and cancellations, whose trace is deterministic
    script = TARGETS / "lock_stress.py"
    env = {"PYTHONPATH": str(REPO)}
    plain = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    watched = subprocess.run(
        [sys.executable, "-m", "taskscope.agent.launch", str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    # THEN the program's trace, output and exit status are the same with the agent
    assert plain.returncode == 0, plain.stderr
    assert (watched.returncode, watched.stdout, watched.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )
    assert plain.stdout.startswith("lock stress:")


# --- failed tasks ---------------------------------------------------------------------------


def _assert_failures(pid: int) -> None:
    tasks = by_name(agent_snapshot(pid))
    orphan = tasks["orphan"]
    assert orphan["state"] == "failed"
    assert orphan["exception_retrieved"] is False
    assert "return int(row)  # the raising line" in orphan["traceback"]
    assert orphan["traceback"].startswith("Traceback (most recent call last):")
    assert orphan["traceback"].endswith(
        "ValueError: invalid literal for int() with base 10: 'not a number'"
    )
    # collected at once, unretrieved: asyncio said so, and the agent heard it
    assert tasks["dropped"]["exception_retrieved"] is False
    assert tasks["dropped"]["traceback"].endswith("RuntimeError: dropped on the floor")
    assert tasks["awaited-failure"]["exception_retrieved"] is True
    gathered = tasks["gathered-failure"]
    assert gathered["exception_retrieved"] is True
    assert "The above exception was the direct cause" in gathered["traceback"]
    assert gathered["traceback"].index("KeyError: 'key'") < gathered["traceback"].index(
        "LookupError: while looking up"
    )


def test_failed_tasks_keep_their_traceback_and_whether_it_was_retrieved(start: Any) -> None:
    # GIVEN failed tasks: unawaited (kept, and dropped), awaited, gathered
    target = start("failures.py").wait_ready()
    _assert_failures(target.pid)
    # THEN `taskscope stack` shows the traceback of a failed task
    out = run_cli("stack", str(target.pid), "orphan").stdout
    assert "return int(row)  # the raising line" in out
    target.stop()


def _attached(pid: int) -> None:
    """`taskscope dump PID` on a program without the agent, and its agent's first look.
    On a loaded machine the injection may outlast the CLI's wait on 3.14+, which then reads
    the program's memory instead (and exits 0): the agent, loaded a moment later, is waited
    for, so that it has looked (and hooked task creation) before the program goes on."""
    assert run_cli("dump", str(pid)).returncode == 0

    def looked() -> bool:
        try:
            agent_snapshot(pid)
        except Exception:
            return False
        return True

    wait_for(looked, what="the agent's first look")


def test_failed_tasks_after_an_attach(start: Any) -> None:
    # GIVEN a program without the agent, which starts its tasks when told
    target = start("failures.py", "on-go", agent=False).wait_ready()
    _attached(target.pid)
    target.file(f"go-{target.pid}").write_text("go")
    wait_for(lambda: "all failed" in notes(target), what="the tasks to fail")
    _assert_failures(target.pid)
    target.stop()


@pytest.mark.parametrize("how", ["run", "attach"])
def test_never_retrieved_message_is_unchanged(start: Any, how: str) -> None:
    # GIVEN the same program without the agent, and with it (run with it, or attached to)
    plain = start("failures.py", "on-go", agent=False).wait_ready()
    watched = start("failures.py", "on-go", agent=how == "run").wait_ready()
    if how == "attach":
        _attached(watched.pid)
    for target in (plain, watched):
        target.file(f"go-{target.pid}").write_text("go")
        wait_for(lambda target=target: "all failed" in notes(target), what="the tasks to fail")
    _assert_failures(watched.pid)  # looked at: the orphan's flag read while it lives
    # THEN asyncio's own reports ("Task exception was never retrieved") are the same
    plain_code, plain_out, plain_err = plain.stop()
    code, out, err = watched.stop()
    assert plain_err.count("Task exception was never retrieved") == 2
    assert (code, out, err) == (plain_code, plain_out, plain_err)


# --- the creation chain -----------------------------------------------------------------------


def test_the_creation_chain_is_bounded_shared_and_skips_asyncio() -> None:
    # GIVEN tasks created ten calls deep, twice from the same place, and through a TaskGroup
    tracker = Tracker()
    tracker.install()

    async def idle() -> None:
        await asyncio.sleep(10)

    def nested(depth: int, name: str) -> asyncio.Task[None]:
        if depth:
            return nested(depth - 1, name)
        return asyncio.create_task(idle(), name=name)

    async def main() -> dict[str, Any]:
        made = [nested(10, "deep-1"), nested(10, "deep-2")]
        async with asyncio.TaskGroup() as group:
            made.append(group.create_task(idle(), name="grouped"))
            snap = await asyncio.to_thread(SnapshotBuilder(tracker).build)
            same_site = (
                tracker.meta_of(made[0]).created_from
                is tracker.meta_of(  # type: ignore[union-attr]
                    made[1]
                ).created_from
            )
            for task in made:
                task.cancel()
        return {"snap": snap, "same_site": same_site}

    try:
        result = asyncio.run(main())
    finally:
        tracker.uninstall()
    tasks = by_name(result["snap"])
    deep = tasks["deep-1"]["created_from"]
    # THEN the chain is the innermost CREATION_DEPTH frames of the program, innermost first
    assert len(deep) == CREATION_DEPTH == 6
    assert [frame["function"] for frame in deep] == [
        "test_the_creation_chain_is_bounded_shared_and_skips_asyncio.<locals>.nested"
    ] * 6
    # AND tasks made at one place share one chain (no new tuples per task)
    assert result["same_site"] is True
    # AND asyncio's frames are skipped (TaskGroup.create_task), the chain ending at the task
    grouped = [frame["function"] for frame in tasks["grouped"]["created_from"]]
    assert grouped == ["test_the_creation_chain_is_bounded_shared_and_skips_asyncio.<locals>.main"]


def test_the_exception_line_never_runs_the_programs_code() -> None:
    # GIVEN exceptions whose message would need the program's code to make
    called: list[str] = []

    class Loud(Exception):
        def __str__(self) -> str:
            called.append("__str__")
            return "loud"

    class Key:
        def __repr__(self) -> str:
            called.append("__repr__")
            return "key"

    class Quiet(ValueError):
        pass

    # THEN the line says what it can without calling it
    assert exception_line(Loud("x")).endswith("Loud: <message not read: custom __str__>")
    assert exception_line(KeyError(Key())).startswith("KeyError(<")
    assert exception_line(OSError(2, "gone", Key())) == "FileNotFoundError(2, 'gone')"
    assert called == []
    # AND built-in messages read as Python prints them
    assert exception_line(ValueError("bad row")) == "ValueError: bad row"
    assert exception_line(KeyError("k")) == "KeyError: 'k'"
    assert exception_line(Quiet("q")).endswith("Quiet: q")
    assert exception_line(RuntimeError()) == "RuntimeError"


def test_a_huge_int_result_is_summed_up_by_its_size_not_lost() -> None:
    # GIVEN results a task may return: ints too long for repr() (over 4,300 digits it raises)
    huge = 10**5000
    # THEN their summary is their size, made without the digits; small ones as repr gives them
    assert safe_repr(huge) == f"<int of {huge.bit_length()} bits>"
    assert safe_repr(-huge) == f"<int of {huge.bit_length()} bits>"
    assert safe_repr(2**64) == repr(2**64)
    assert safe_repr(True) == "True"


# --- calls waiting for a thread -----------------------------------------------------------


def _blocking_line(target: str) -> int:
    """The line of a target that blocks its worker threads."""
    lines = (TARGETS / target).read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if "# a blocking call with no timeout" in line)


def test_a_call_of_a_process_pool_says_its_function_and_the_pool(start: Any) -> None:
    # GIVEN two calls of `crunch` in a process pool of one worker
    target = start("process_pool_calls.py").wait_ready()
    tasks = by_name(agent_snapshot(target.pid))
    # THEN each awaiting task says the function and the pool's processes and calls
    for name in ("proc-1", "proc-2"):
        awaiting = tasks[name]["awaiting"]
        assert awaiting["kind"] == "executor", awaiting
        assert awaiting["text"] == (
            "run_in_executor crunch in a process pool (1 process, 2 calls not done)"
        ), awaiting
    code, _out, err = target.stop()
    assert code == 0, err


def test_a_call_queued_in_a_busy_thread_pool_says_so(start: Any) -> None:
    # GIVEN a program whose default thread pool (2 threads) runs two `to_thread` calls and
    # has two more queued, and whose other pool (1 thread) runs one call and has one queued
    target = start("thread_pools.py").wait_ready()
    tasks = by_name(agent_snapshot(target.pid))
    texts = {name: task["awaiting"]["text"] for name, task in tasks.items() if task["awaiting"]}
    threaded = sorted(texts[f"threaded-{number}"] for number in range(4))
    # THEN a call a thread runs names the thread and where the program's code is in it; a
    # queued one says that every thread of its pool is busy (the default pool's, which
    # `to_thread` uses), or that it is queued
    place = f"at wait_for_release() thread_pools.py:{_blocking_line('thread_pools.py')}"
    assert threaded == [
        f"to_thread wait_for_release in pool_0, {place}",
        f"to_thread wait_for_release in pool_1, {place}",
        "to_thread wait_for_release, queued: 2 of 2 threads busy",
        "to_thread wait_for_release, queued: 2 of 2 threads busy",
    ], threaded
    assert texts["resolver"] == "loop.getaddrinfo localhost:80, queued: 2 of 2 threads busy"
    assert texts["exec-0"] == f"run_in_executor wait_for_release in other_0, {place}", texts
    assert texts["exec-1"] == "run_in_executor, queued", texts
    in_pool = [
        name for name in (f"threaded-{number}" for number in range(4)) if " in pool_" in texts[name]
    ]
    [queued, _other] = [
        tasks[f"threaded-{number}"]["awaiting"]["object"]
        for number in range(4)
        if "queued" in texts[f"threaded-{number}"]
    ]
    assert queued == {
        "function": "wait_for_release",
        "queued": True,
        "workers": 2,
        "busy": 2,
    }, queued
    # AND once the calls have waited over a second (from the look that found them), `lint`
    # warns that the default pool's threads are exhausted, and where the threads' calls are
    time.sleep(1.2)
    lint = run_cli("lint", str(target.pid))
    assert lint.returncode == EXIT_WARNINGS, (lint.stdout, lint.stderr)
    [line] = [line for line in lint.stdout.splitlines() if line.startswith("threads exhausted: ")]
    found = re.search(
        r"for a worker thread: all 2 threads of the default thread pool are busy, with the calls"
        r" of (\S+), (\S+); the threads' calls are at wait_for_release\(\) thread_pools.py:(\d+)"
        r" \(3\):",
        line,
    )
    assert found is not None, line
    assert {found[1], found[2]} == set(in_pool), line
    assert int(found[3]) == _blocking_line("thread_pools.py"), line
    # WHEN the calls are released
    target.file(f"release-{target.pid}").write_text("go")
    # THEN every call ran, the queued ones too
    wait_for(lambda: "all calls done" in notes(target), what="the seven calls to return")
    code, _out, err = target.stop()
    assert code == 0, err
