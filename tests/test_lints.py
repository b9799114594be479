"""The lints on models built from wire dicts: each kind found where the facts say so, worded by
`words.finding_text`, and not found for a healthy program of the same shape (a lock handed
over normally, a failed task that was awaited, a waiter whose object something else holds)."""

from __future__ import annotations

from typing import Any

from taskscope.lints import Finding, find_warnings, warned_tasks
from taskscope.model import TaskModel
from taskscope.words import awaiting_text, finding_text, warnings_summary
from tests.test_model import awaiting, snapshot, task


def model_of(*tasks: dict[str, Any], **extra: Any) -> TaskModel:
    raw = snapshot(*tasks, cycles=extra.pop("cycles", None))
    raw.update(extra)
    return TaskModel.from_snapshot(raw)


def kinds(model: TaskModel) -> list[str]:
    return [finding.kind for finding in find_warnings(model)]


def lock_wait(name: str, object_id: str, holders: list[str], **facts: Any) -> Any:
    return awaiting(
        "lock",
        call="Lock.acquire",
        object={
            "type": "Lock",
            "id": object_id,
            "name": name,
            "locked": True,
            "waiters": 1,
            "holders": holders,
            **facts,
        },
    )


# --- lock deadlock ----------------------------------------------------------------------------


def test_two_tasks_holding_each_others_lock_are_a_lock_deadlock() -> None:
    # GIVEN transfer-a waits for `second`, held by transfer-b, which waits for `first`,
    # held by transfer-a
    model = model_of(
        task("1", "transfer-a", awaiting=lock_wait("second", "0x2", ["2"])),
        task("2", "transfer-b", awaiting=lock_wait("first", "0x1", ["1"])),
    )
    # WHEN the lints run
    findings = find_warnings(model)
    # THEN one lock deadlock names both tasks and who holds each lock
    assert [f.kind for f in findings] == ["lock_deadlock"]
    assert findings[0].tasks == ("1", "2")
    assert findings[0].loop == "L1"
    assert finding_text(findings[0], model) == (
        "lock deadlock: transfer-a holds first and waits for second, held by transfer-b, "
        "which waits for first"
    )


def test_a_lock_whose_holder_ended_is_an_abandoned_lock_about_every_waiter() -> None:
    # GIVEN two tasks waiting for `db`, held by loader, which failed without releasing it
    from taskscope.lints import warning_records

    ended = {"holder_names": ["loader"], "holder_state": "failed"}
    raw = snapshot(
        task("2", "worker-2", awaiting=lock_wait("db", "0x1", [], **ended)),
        task("3", "worker-3", awaiting=lock_wait("db", "0x1", [], **ended)),
        task("4", "idle", awaiting=awaiting("sleep")),
    )
    model = TaskModel.from_snapshot(raw)
    findings = find_warnings(model)
    # THEN one warning is about both waiters and names the holder and how it ended
    assert [(f.kind, f.tasks) for f in findings] == [("abandoned_lock", ("2", "3"))]
    assert finding_text(findings[0], model) == (
        "abandoned lock: worker-2 and worker-3 wait for db, held by loader, which failed "
        "without releasing it: nothing will (take it with `async with`, or release it in a "
        "`finally`)"
    )
    assert awaiting_text(raw["tasks"][0]["awaiting"]) == (
        "Lock.acquire on db (locked, 1 waiting), held by loader, which failed"
    )
    # AND dump, which keeps the records a warning can be about, finds it alike
    subset = warning_records(raw)
    assert [record["id"] for record in subset["tasks"]] == ["2", "3"]
    small = TaskModel.from_snapshot(subset)
    assert [finding_text(f, small) for f in find_warnings(small)] == [
        finding_text(findings[0], model)
    ]


def test_a_lock_whose_holder_was_collected_is_abandoned_and_a_pending_holders_is_not() -> None:
    from taskscope.lints import warning_records

    gone = snapshot(task("2", "w", awaiting=lock_wait("db", "0x1", [], holders_gone=True)))
    model = TaskModel.from_snapshot(gone)
    [finding] = find_warnings(model)
    assert finding.kind == "abandoned_lock"
    assert "w waits for db, held by a task that has ended without releasing it" in (
        finding_text(finding, model)
    )
    assert find_warnings(TaskModel.from_snapshot(warning_records(gone))) == [finding]
    # a holder still pending will release it: no warning
    held = model_of(
        task("1", "holder", awaiting=awaiting("sleep")),
        task("2", "w", awaiting=lock_wait("db", "0x1", ["1"])),
    )
    assert kinds(held) == []


def test_locks_of_one_name_are_told_apart_by_their_ids() -> None:
    model = model_of(
        task("1", "a", awaiting=lock_wait("lock", "0x2", ["2"])),
        task("2", "b", awaiting=lock_wait("lock", "0x1", ["1"])),
    )
    text = finding_text(find_warnings(model)[0], model)
    assert text == (
        "lock deadlock: a holds Lock A and waits for Lock B, held by b, which waits for Lock A"
    )


def test_a_deadlock_through_an_awaited_task_names_every_task() -> None:
    # GIVEN a holds L and awaits b; b waits for M held by c; c waits for L held by a
    model = model_of(
        task("1", "a", awaiting=awaiting("task", ["2"], object={"task": "b"})),
        task("2", "b", awaiting=lock_wait("M", "0xm", ["3"])),
        task("3", "c", awaiting=lock_wait("L", "0xl", ["1"])),
    )
    findings = find_warnings(model)
    assert [f.kind for f in findings] == ["lock_deadlock"]
    assert set(findings[0].tasks) == {"1", "2", "3"}
    assert finding_text(findings[0], model) == (
        "lock deadlock: b waits for M, held by c, which waits for L, held by a, which awaits b"
    )


def test_tasks_of_a_deadlock_are_not_also_said_never_woken() -> None:
    model = model_of(
        task("1", "a", awaiting=lock_wait("second", "0x2", ["2"], never_woken=True)),
        task("2", "b", awaiting=lock_wait("first", "0x1", ["1"], never_woken=True)),
    )
    assert kinds(model) == ["lock_deadlock"]


def test_a_task_waiting_for_a_lock_it_holds_is_a_deadlock_of_its_own() -> None:
    model = model_of(task("1", "worker", awaiting=lock_wait("db", "0x1", ["1"])))
    findings = find_warnings(model)
    assert [f.kind for f in findings] == ["lock_deadlock"]
    assert finding_text(findings[0], model) == (
        "lock deadlock: worker holds db and waits for it again (asyncio's locks are not reentrant)"
    )


def test_a_normal_lock_handoff_is_no_deadlock() -> None:
    # GIVEN b waits for a lock a holds while a sleeps (it will release it)
    model = model_of(
        task("1", "a", awaiting=awaiting("sleep", seconds_left=1.0)),
        task("2", "b", awaiting=lock_wait("db", "0x1", ["1"])),
        task("3", "c", awaiting=lock_wait("db", "0x1", ["1"])),
    )
    assert kinds(model) == []


def test_a_semaphore_with_a_holder_outside_the_cycle_is_no_deadlock() -> None:
    # GIVEN a waits for a semaphore held by b and by c; b waits for a lock a holds; c sleeps
    model = model_of(
        task("1", "a", awaiting=lock_wait("pool", "0x9", ["2", "3"])),
        task("2", "b", awaiting=lock_wait("L", "0x1", ["1"])),
        task("3", "c", awaiting=awaiting("sleep", seconds_left=1.0)),
    )
    # THEN c can still release the semaphore: no warning
    assert kinds(model) == []


def test_a_semaphore_whose_holders_are_known_in_part_makes_no_deadlock() -> None:
    # GIVEN a holds lock L and waits for a semaphore whose holders the stacks show are b alone
    # (others may hold permits: taken with acquire()), and b waits for L
    for more in ({"holders_partial": True}, {"holders_more": 1}):
        model = model_of(
            task("1", "a", awaiting=lock_wait("pool", "0x9", ["2"], **more)),
            task("2", "b", awaiting=lock_wait("L", "0x1", ["1"])),
        )
        # THEN no deadlock is said: a holder outside may release a permit
        assert kinds(model) == []
    # (with its holders all known, it is one)
    model = model_of(
        task("1", "a", awaiting=lock_wait("pool", "0x9", ["2"])),
        task("2", "b", awaiting=lock_wait("L", "0x1", ["1"])),
    )
    assert kinds(model) == ["lock_deadlock"]


def test_unknown_holders_make_no_deadlock() -> None:
    model = model_of(
        task("1", "a", awaiting=lock_wait("L", "0x1", [], holders_unknown=True)),
        task("2", "b", awaiting=lock_wait("M", "0x2", ["1"])),
    )
    assert kinds(model) == []


# --- await cycle ------------------------------------------------------------------------------


def test_an_await_cycle_is_a_warning() -> None:
    model = model_of(
        task("7", "fetch-7", awaiting=awaiting("task", ["8"])),
        task("8", "fetch-8", awaiting=awaiting("task", ["7"])),
        cycles=[["7", "8"]],
    )
    findings = find_warnings(model)
    assert findings == [Finding("await_cycle", ("7", "8"), "L1", {})]
    assert finding_text(findings[0], model) == (
        "await cycle: fetch-7 and fetch-8 await each other: none of them can finish"
    )
    assert warned_tasks(findings) == {"7": findings, "8": findings}


def test_tasks_awaiting_a_chain_that_ends_are_no_cycle() -> None:
    model = model_of(
        task("7", "fetch-7", awaiting=awaiting("task", ["8"])),
        task("8", "fetch-8", awaiting=awaiting("sleep", seconds_left=3.0)),
    )
    assert kinds(model) == []


# --- exception never retrieved ----------------------------------------------------------------


def failed(task_id: str, name: str, retrieved: bool | None, finished_at: float = 1990.0) -> Any:
    record = task(
        task_id,
        name,
        state="failed",
        exception="ValueError('boom')",
        finished_at=finished_at,
    )
    if retrieved is not None:
        record["exception_retrieved"] = retrieved
    return record


def test_a_failed_task_nobody_retrieved_is_a_warning() -> None:
    model = model_of(failed("5", "parse-5", retrieved=False))
    findings = find_warnings(model)
    assert [f.kind for f in findings] == ["exception_never_retrieved"]
    assert finding_text(findings[0], model) == (
        "exception never retrieved: parse-5 failed with ValueError('boom') and nobody awaited it"
    )


def test_a_failed_task_that_was_awaited_or_is_unknown_is_none() -> None:
    # GIVEN one failed task awaited (retrieved), one from an agent that does not say
    model = model_of(failed("5", "a", retrieved=True), failed("6", "b", retrieved=None))
    assert kinds(model) == []


def test_a_failure_of_the_last_moment_waits_for_its_waiter() -> None:
    # GIVEN a task failed 0.2 s before the snapshot: its waiter runs at the next turn
    model = model_of(failed("5", "a", retrieved=False, finished_at=1999.8))
    assert kinds(model) == []
    assert [f.kind for f in find_warnings(model, now=2002.0)] == ["exception_never_retrieved"]


# --- cancel not honoured ----------------------------------------------------------------------


def test_a_cancel_not_delivered_for_over_a_second_is_a_warning() -> None:
    model = model_of(
        task("3", "stuck", cancel_requested_at=1997.5),
        task("4", "fresh", cancel_requested_at=1999.5),
    )
    findings = find_warnings(model)
    assert [(f.kind, f.tasks) for f in findings] == [("cancel_not_honoured", ("3",))]
    assert finding_text(findings[0], model) == (
        "cancel not honoured: stuck was asked to cancel 2.5 s ago and its loop has not delivered it"
    )


# --- facts from the agent: never woken, unreferenced -------------------------------------------


def test_a_wait_made_by_its_await_is_said_until_cancelled_and_is_no_warning() -> None:
    # `await asyncio.Future()` ("run forever"): never woken, as it was written to be
    made = {"type": "Future", "never_woken": True, "made_by_await": True}
    lost = {"type": "Event", "never_woken": True}
    model = model_of(
        task("2", "server", awaiting=awaiting("future", call="Future", object=made)),
        task("3", "lost", awaiting=awaiting("event", call="Event.wait", object=lost)),
    )
    findings = find_warnings(model)
    assert [(f.kind, f.tasks) for f in findings] == [("never_woken", ("3",))]
    assert finding_text(findings[0], model) == (
        "never woken: lost waits on an Event, which no other task, callback, timer or file "
        "can reach: it will never be set"
    )
    server = model.tasks["2"].awaiting
    assert server is not None
    assert awaiting_text(server.raw) == "Future, until cancelled"


def test_never_woken_and_unreferenced_come_from_the_agents_facts() -> None:
    model = model_of(
        task(
            "2",
            "waiter",
            awaiting=awaiting(
                "event",
                call="Event.wait",
                object={"type": "Event", "id": "0x1", "name": "gate", "never_woken": True},
            ),
        ),
        task(
            "3",
            "leak",
            awaiting=awaiting("future", call="Future", object={"never_woken": True}),
            unreferenced=True,
        ),
        task("4", "fine", awaiting=awaiting("event", object={"name": "other", "set": False})),
    )
    findings = find_warnings(model)
    # THEN the unreferenced task is not said never woken too (nothing reaching it implies it)
    assert [(f.kind, f.tasks) for f in findings] == [
        ("never_woken", ("2",)),
        ("unreferenced", ("3",)),
    ]
    assert finding_text(findings[0], model) == (
        "never woken: waiter waits on gate, which no other task, callback, timer or file can "
        "reach: it will never be set"
    )
    assert finding_text(findings[1], model).startswith(
        "unreferenced: leak is pending and nothing references it"
    )


# --- runtime: blocking step, sleep(0) spin ----------------------------------------------------


def test_a_stall_is_a_blocking_step_naming_its_task_and_line() -> None:
    raw = snapshot(task("9", "crunch"))
    raw["loops"][0]["stall_threshold"] = 0.1
    raw["loops"][0]["stalls"] = [
        {
            "started_at": 1990.0,
            "duration": 0.3,
            "task": "9",
            "task_name": "crunch",
            "callback": None,
            "stack": [
                {"function": "crunch", "file": "app.py", "line": 10},
                {"function": "sleep", "file": "time", "line": None},
            ],
        }
    ]
    model = TaskModel.from_snapshot(raw)
    findings = find_warnings(model)
    assert [(f.kind, f.tasks, f.loop) for f in findings] == [("blocking_step", ("9",), "L1")]
    text = finding_text(findings[0], model)
    assert text.startswith(
        "blocking step: a step of crunch held the loop for 300ms in sleep() at time (at "
    )


def test_stalls_of_one_task_are_one_warning_and_a_callbacks_another() -> None:
    def stall(started: float, duration: float, task: str | None, line: int) -> Any:
        return {
            "started_at": started,
            "duration": duration,
            "task": task,
            "task_name": "crunch" if task else None,
            "callback": None if task else "on_timer",
            "stack": [{"function": "crunch", "file": "app.py", "line": line}],
        }

    raw = snapshot(task("9", "crunch"))
    raw["loops"][0]["stall_threshold"] = 0.1
    raw["loops"][0]["stalls"] = [
        stall(1990.0, 0.2, "9", 10),
        stall(1995.0, 0.5, "9", 12),
        stall(1996.0, 0.15, None, 20),
        stall(1998.0, 0.3, "9", 14),
    ]
    model = TaskModel.from_snapshot(raw)
    findings = find_warnings(model)
    assert [(f.kind, f.tasks) for f in findings] == [
        ("blocking_step", ("9",)),
        ("blocking_step", ()),
    ]
    assert findings[0].facts["count"] == 3 and findings[0].facts["duration"] == 0.5
    assert findings[0].facts["location"] == "app.py:12"  # where the longest one blocked
    texts = [finding_text(f, model) for f in findings]
    assert texts[0].startswith(
        "blocking step: a step of crunch held, at the longest, the loop for 500ms in crunch() "
        "at app.py:12 (3 times, the last at "
    )
    assert texts[1].startswith(
        "blocking step: callback on_timer held the loop for 150ms in crunch() at app.py:20 (at "
    )


def test_stalls_of_ended_tasks_are_one_warning_per_code_and_line() -> None:
    """A server's requests are one task each: a blocking call in a handler stalls the loop
    once per request, each time in a task that has ended by the next look."""

    def stall(started: float, duration: float, task: str, line: int) -> Any:
        return {
            "started_at": started,
            "duration": duration,
            "task": task,
            "task_name": f"Task-{task}",
            "callback": None,
            "stack": [
                {"function": "Cycle.run_asgi", "file": "server.py", "line": 80},
                {"function": "crunch", "file": "app.py", "line": line},
            ],
        }

    raw = snapshot(task("9", "crunch"))
    raw["loops"][0]["stall_threshold"] = 0.1
    raw["loops"][0]["stalls"] = [
        stall(1990.0, 0.2, "31", 4),
        stall(1991.0, 0.4, "32", 4),
        stall(1992.0, 0.3, "33", 7),  # another line: another warning
        stall(1993.0, 0.25, "34", 4),
        {**stall(1994.0, 0.3, "9", 4), "task_name": "crunch"},  # pending: its own
    ]
    model = TaskModel.from_snapshot(raw)
    findings = find_warnings(model)
    assert [(f.kind, f.tasks) for f in findings] == [
        ("blocking_step", ("31", "32", "34")),
        ("blocking_step", ("33",)),
        ("blocking_step", ("9",)),
    ]
    texts = [finding_text(f, model) for f in findings]
    assert texts[0].startswith(
        "blocking step: steps of 3 tasks running Cycle.run_asgi() held, at the longest, the "
        "loop for 400ms in crunch() at app.py:4 (3 times, the last at "
    )
    # AND a task asyncio named is said with what it ran; one the program named, by its name
    assert texts[1].startswith(
        "blocking step: a step of Task-33 (Cycle.run_asgi()) held the loop for 300ms in "
        "crunch() at app.py:7"
    )
    assert texts[2].startswith("blocking step: a step of crunch held the loop for 300ms")
    # AND the dashboard's line names them so
    assert warnings_summary(findings, model) == (
        "⚠ 3 warnings: blocking step (3 tasks running Cycle.run_asgi()) · "
        "blocking step (Task-33) · blocking step (crunch)"
    )


def test_a_loop_without_stalls_has_no_blocking_step() -> None:
    raw = snapshot(task("9", "crunch"))
    raw["loops"][0]["stall_threshold"] = 0.1
    raw["loops"][0]["stalls"] = []
    assert kinds(TaskModel.from_snapshot(raw)) == []


def test_a_task_stepping_fast_without_waiting_is_a_spin() -> None:
    # GIVEN spinner ran 50,000 steps in its 10 s, the last one just now, awaiting nothing;
    # poller ran as many but waits on a real sleep; old stepped long ago; slow is ready now
    # but stepped 900 times a second (a sleep of a millisecond or more can wake it so)
    model = model_of(
        task("1", "spinner", steps=50_000, last_ran_at=1999.9, created_at=1990.0),
        task(
            "2",
            "poller",
            steps=50_000,
            last_ran_at=1999.9,
            created_at=1990.0,
            awaiting=awaiting("sleep", seconds_left=0.01),
        ),
        task("3", "old", steps=50_000, last_ran_at=1990.0, created_at=1900.0),
        task("4", "slow", steps=9_000, last_ran_at=1999.9, created_at=1990.0),
        # in sleep(0): the agent says `sleep` with no time left (no timer)
        task(
            "5",
            "yielder",
            steps=50_000,
            last_ran_at=1999.9,
            created_at=1990.0,
            awaiting=awaiting("sleep"),
        ),
    )
    findings = find_warnings(model)
    assert [(f.kind, f.tasks) for f in findings] == [
        ("sleep0_spin", ("1",)),
        ("sleep0_spin", ("5",)),
    ]
    assert finding_text(findings[0], model).startswith(
        "sleep(0) spin: spinner ran 50000 steps (5000.0 a second) without waiting"
    )


def test_a_healthy_process_has_no_warning() -> None:
    model = model_of(
        task("1", "main", awaiting=awaiting("taskgroup", ["2", "3"], object={"size": 2})),
        task("2", "worker", awaiting=awaiting("queue_get", object={"name": "jobs", "size": 0})),
        task("3", "ticker", awaiting=awaiting("sleep", seconds_left=0.5)),
        failed("4", "job", retrieved=True),
    )
    assert find_warnings(model) == []


def test_dump_finds_the_same_warnings_in_the_records_that_can_carry_them() -> None:
    # GIVEN a snapshot with every kind of fact, and plenty of tasks that carry none
    raw = snapshot(
        task("1", "transfer-a", awaiting=lock_wait("second", "0x2", ["2"])),
        task("2", "transfer-b", awaiting=lock_wait("first", "0x1", ["1"])),
        task("3", "a", awaiting=awaiting("task", ["4"])),
        task("4", "b", awaiting=awaiting("task", ["3"])),
        failed("5", "parse", retrieved=False),
        failed("6", "fine", retrieved=True),
        task("7", "stuck", cancel_requested_at=1990.0),
        task("8", "leak", unreferenced=True),
        task("9", "spinner", steps=50_000, last_ran_at=1999.9, created_at=1990.0),
        *(task(str(n), f"idle-{n}", awaiting=awaiting("sleep")) for n in range(10, 60)),
        cycles=[["3", "4"]],
    )
    full = TaskModel.from_snapshot(raw)
    # WHEN dump keeps only the records a warning can be about
    from taskscope.lints import warning_records

    subset = warning_records(raw)
    small = TaskModel.from_snapshot(subset)
    # THEN the findings and their words are the same, from 8 records of 59
    assert len(subset["tasks"]) == 8
    assert find_warnings(small) == find_warnings(full)
    assert [finding_text(f, small) for f in find_warnings(small)] == [
        finding_text(f, full) for f in find_warnings(full)
    ]
    assert len(find_warnings(full)) == 6


def test_a_cancel_delivered_and_caught_is_a_warning_after_five_seconds() -> None:
    model = model_of(
        task("3", "stubborn", cancelling_since=1990.0),
        task("4", "cleaning", cancelling_since=1997.0),
        # on a blocked loop both are said: the undelivered cancel is the warning
        task("5", "blocked", cancel_requested_at=1990.0, cancelling_since=1990.0),
    )
    findings = find_warnings(model)
    assert [(f.kind, f.tasks) for f in findings] == [
        ("cancel_not_honoured", ("3",)),
        ("cancel_not_honoured", ("5",)),
    ]
    assert finding_text(findings[0], model) == (
        "cancel not honoured: stubborn was cancelled 10.0 s ago or more and goes on: it caught "
        "the CancelledError (re-raise it, or call uncancel() if that is meant)"
    )
    assert "its loop has not delivered it" in finding_text(findings[1], model)


def test_dump_leaves_out_lock_waiters_no_wait_points_at() -> None:
    # GIVEN 40 tasks queued on a lock held by a sleeping task, beside a deadlock through an
    # awaited task (a holds L and awaits b; b waits for M held by c; c waits for L held by a)
    from taskscope.lints import warning_records

    raw = snapshot(
        task("1", "a", awaiting=awaiting("task", ["2"], object={"task": "b"})),
        task("2", "b", awaiting=lock_wait("M", "0xm", ["3"])),
        task("3", "c", awaiting=lock_wait("L", "0xl", ["1"])),
        task("4", "holder", awaiting=awaiting("sleep")),
        *(task(str(n), f"queued-{n}", awaiting=lock_wait("Q", "0xq", ["4"])) for n in range(5, 45)),
    )
    full = TaskModel.from_snapshot(raw)
    # WHEN dump keeps the records a warning can be about
    subset = warning_records(raw)
    small = TaskModel.from_snapshot(subset)
    # THEN the queued tasks are not among them (no wait points at them), the deadlock's are,
    # in the snapshot's order, and the findings and their words are the same
    assert [record["id"] for record in subset["tasks"]] == ["1", "2", "3"]
    assert [f.kind for f in find_warnings(full)] == ["lock_deadlock"]
    assert find_warnings(small) == find_warnings(full)
    assert [finding_text(f, small) for f in find_warnings(small)] == [
        finding_text(f, full) for f in find_warnings(full)
    ]


# --- threads exhausted ------------------------------------------------------------------------


def queued_call(**facts: Any) -> Any:
    return awaiting(
        "executor",
        call="to_thread",
        object={"function": "fetch", "queued": True, "workers": 2, "busy": 2, **facts},
    )


def limiter_wait(**facts: Any) -> Any:
    return awaiting(
        "semaphore",
        call="CapacityLimiter.acquire",
        object={
            "type": "CapacityLimiter",
            "id": "0x9",
            "name": None,
            "thread_limiter": True,
            "value": 0,
            "waiters": 2,
            **facts,
        },
    )


def test_calls_queued_for_a_second_behind_busy_threads_are_threads_exhausted() -> None:
    from taskscope.lints import warning_records

    # GIVEN two calls queued in the default pool, both threads busy, one for 4 s
    in_thread = awaiting(
        "executor",
        call="to_thread",
        object={
            "function": "fetch",
            "thread": "asyncio_0",
            "thread_stack": [
                {"function": "fetch", "file": "/app/db.py", "line": 12},
                {"function": "Event.wait", "file": "/usr/lib/python3.12/threading.py", "line": 9},
            ],
        },
    )
    raw = snapshot(
        task("1", "in-thread-0", awaiting=in_thread),
        task("2", "req-2", awaiting=queued_call(), waiting_seen_at=1996.0),
        task("3", "req-3", awaiting=queued_call(), waiting_seen_at=1999.5),
    )
    model = TaskModel.from_snapshot(raw)
    # THEN one warning is about the queued calls
    [finding] = find_warnings(model)
    assert (finding.kind, finding.tasks) == ("threads_exhausted", ("2", "3"))
    assert finding_text(finding, model) == (
        "threads exhausted: req-2 and req-3 wait ≥4.0s for a worker thread: all 2 threads of the"
        " default thread pool are busy, with the calls of in-thread-0; the threads' calls are at"
        " fetch() db.py:12 (1): a call that does not return holds its thread (give blocking calls"
        " a timeout, or the pool more threads)"
    )
    # AND dump, which keeps the records a warning can be about, finds it alike
    small = TaskModel.from_snapshot(warning_records(raw))
    assert [finding_text(f, small) for f in find_warnings(small)] == [finding_text(finding, model)]


def test_a_short_queue_or_a_free_thread_is_no_warning() -> None:
    # a queue of half a second: a server under load
    assert kinds(model_of(task("2", "q", awaiting=queued_call(), waiting_seen_at=1999.5))) == []
    # a thread free (the call is about to run), or a pool of unknown size
    free = queued_call(busy=1)
    assert kinds(model_of(task("2", "q", awaiting=free, waiting_seen_at=1990.0))) == []
    unknown = awaiting("executor", call="run_in_executor", object={"queued": True})
    assert kinds(model_of(task("2", "q", awaiting=unknown, waiting_seen_at=1990.0))) == []
    # a named limiter of the program's own: back-pressure it chose
    named = limiter_wait(name="pool", thread_limiter=False)
    assert kinds(model_of(task("2", "q", awaiting=named, waiting_seen_at=1990.0))) == []


def connection_wait(**facts: Any) -> Any:
    return awaiting(
        "pool",
        call="TCPConnector.connect",
        peer="api.example.com:443",
        object={
            "type": "TCPConnector",
            "id": "0x7",
            "limit": 100,
            "in_use": 100,
            "limit_per_host": 0,
            "host_in_use": 100,
            "waiters": 2,
            **facts,
        },
    )


def test_requests_queued_for_long_behind_a_full_connection_pool_are_connections_exhausted() -> None:
    from taskscope.lints import warning_records

    # GIVEN two requests queued for a connection of a pool whose 100 are in use, one for 30 s
    raw = snapshot(
        task("2", "fetch-2", awaiting=connection_wait(), waiting_seen_at=1970.0),
        task("3", "fetch-3", awaiting=connection_wait(), waiting_seen_at=1999.5),
    )
    model = TaskModel.from_snapshot(raw)
    # THEN one warning says the pool, its host, its limit, and what to do
    [finding] = find_warnings(model)
    assert (finding.kind, finding.tasks) == ("connections_exhausted", ("2", "3"))
    assert finding_text(finding, model) == (
        "connections exhausted: fetch-2 and fetch-3 wait ≥30.0s for a connection from TCPConnector"
        " to api.example.com:443: all 100 in use; each is held until the request or session using"
        " it ends (give them a timeout, or the pool a higher limit)"
    )
    # AND dump, which keeps the records a warning can be about, finds it alike
    small = TaskModel.from_snapshot(warning_records(raw))
    assert [finding_text(f, small) for f in find_warnings(small)] == [finding_text(finding, model)]
    # AND a per-host limit reached says so
    per_host = connection_wait(in_use=3, limit_per_host=2, host_in_use=2)
    [finding] = find_warnings(model_of(task("2", "f", awaiting=per_host, waiting_seen_at=1980)))
    assert "all 2 to this host in use" in finding_text(finding, model)


def test_a_short_queue_for_connections_or_a_pool_with_room_is_no_warning() -> None:
    # a busy client's requests queue for connections for seconds: no warning under 10 s
    short = task("2", "f", awaiting=connection_wait(), waiting_seen_at=1992.0)
    assert kinds(model_of(short)) == []
    # a connection free (the request is about to get it)
    room = connection_wait(in_use=99, host_in_use=99)
    assert kinds(model_of(task("2", "f", awaiting=room, waiting_seen_at=1900.0))) == []


def test_an_exhausted_thread_limiter_names_who_holds_its_tokens() -> None:
    holders = {"holders": ["1", "4", "5", "6"], "holder_names": ["a", "b", "c", "d"]}
    model = model_of(
        task("2", "req-2", awaiting=limiter_wait(**holders, holders_more=1), waiting_seen_at=1998)
    )
    [finding] = find_warnings(model)
    assert finding_text(finding, model) == (
        "threads exhausted: req-2 waits ≥2.0s for a worker thread: all 5 tokens of the default"
        " thread limiter are taken, by a, b, c and 2 more: a call that does not return holds its"
        " thread (give blocking calls a timeout, or the pool more threads)"
    )


def test_just_after_an_attach_a_queued_call_is_reported_though_its_wait_is_unknown() -> None:
    # GIVEN an agent that came 2 s ago, and a call it first saw queued at this look
    seen_now = model_of(
        task("2", "req-2", awaiting=queued_call(), waiting_seen_at=2000.0), history_since=1998.0
    )
    # THEN it is reported, with no duration
    [finding] = find_warnings(seen_now)
    assert finding_text(finding, seen_now).startswith(
        "threads exhausted: req-2 waits for a worker thread: all 2 threads"
    )
    # AND not when the agent has been there long enough to measure waits
    later = model_of(
        task("2", "req-2", awaiting=queued_call(), waiting_seen_at=2000.0), history_since=1900.0
    )
    assert kinds(later) == []


def test_warnings_about_objects_of_one_name_name_each_by_its_letter() -> None:
    # GIVEN two stages whose consumers each wait on the queue their stage calls `q`, which
    # nothing can reach, and two loaders' locks called `db`, each abandoned by its holder
    def lost_queue(object_id: str) -> Any:
        facts = {"type": "Queue", "id": object_id, "name": "q", "size": 0, "never_woken": True}
        return awaiting("queue_get", call="Queue.get", object=facts)

    ended = {"holder_names": ["loader"], "holder_state": "failed"}
    model = model_of(
        task("2", "consumer-0", awaiting=lost_queue("0xa")),
        task("3", "consumer-1", awaiting=lost_queue("0xb")),
        task("4", "worker-4", awaiting=lock_wait("db", "0x1", [], **ended)),
        task("5", "worker-5", awaiting=lock_wait("db", "0x2", [], **ended)),
    )
    texts = [finding_text(finding, model) for finding in find_warnings(model)]
    # THEN each warning names its object as the rows do: `q (Queue A)`, `q (Queue B)`
    assert texts == [
        "abandoned lock: worker-4 waits for db (Lock A), held by loader, which failed without "
        "releasing it: nothing will (take it with `async with`, or release it in a `finally`)",
        "abandoned lock: worker-5 waits for db (Lock B), held by loader, which failed without "
        "releasing it: nothing will (take it with `async with`, or release it in a `finally`)",
        "never woken: consumer-0 waits on q (Queue A), which no other task, callback, timer or "
        "file can reach: no item will ever be put in it",
        "never woken: consumer-1 waits on q (Queue B), which no other task, callback, timer or "
        "file can reach: no item will ever be put in it",
    ]
