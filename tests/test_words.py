"""Facts become words in one place: `taskscope.words` says each await kind from its facts,
counts down from numbers, marks await cycles from the snapshot's `cycles`; `report`'s tables
and trees are pure functions of a model; and nothing else in taskscope/ makes or reads the
words (the agent's records carry no text, the model no regular expression)."""

from __future__ import annotations

import ast
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from taskscope.agent.introspect import SnapshotBuilder
from taskscope.model import TaskModel
from taskscope.protocol import CompactEncoder, materialize_body
from taskscope.report import no_tasks_note, ps_table, task_text, tree_text
from taskscope.words import (
    NamedWaits,
    age_words,
    awaiting_text,
    cancel_note,
    fill_texts,
    format_duration,
    group_label,
    group_rows,
    named_object,
    object_letters,
    retrieval_words,
    schema_text,
    shared_words,
    task_doing,
)
from tests.test_wire import _countdowns, _population, _teardown

PACKAGE = Path(__file__).resolve().parent.parent / "taskscope"


def aw(kind: str, tasks: list[str] | None = None, **facts: Any) -> dict[str, Any]:
    return {"kind": kind, "tasks": tasks or [], **facts}


# Every kind the agent describes (and the read-only look's), as facts, and its sentence.
SENTENCES = [
    (aw("sleep", seconds_left=None), "sleep"),
    (aw("sleep", seconds_left=3.25), "sleep, 3.2 s left"),
    (aw("sleep", seconds_left=4000.0), "sleep, 4000 s left"),
    (aw("sleep", seconds_left=9.0, deadline_in=2.0), "sleep, 9.0 s left, timeout in 2.0 s"),
    (aw("sleep", deadline_in=2.0), "sleep, timeout in 2.0 s"),
    (
        aw("queue_get", call="Queue.get", object={"name": "jobs", "size": 0, "maxsize": 0}),
        "Queue.get on jobs (0 items)",
    ),
    (
        aw("queue_get", call="LifoQueue.get", object={"name": None, "size": 1, "maxsize": 0}),
        "LifoQueue.get (1 item)",
    ),
    (aw("queue_get", call="Queue.get", object={"size": None}), "Queue.get (?)"),
    (
        aw("queue_put", call="Queue.put", object={"name": "results", "size": 1, "maxsize": 1}),
        "Queue.put on results (full, 1/1)",
    ),
    (
        aw("lock", call="Lock.acquire", object={"name": "lock", "locked": True, "waiters": 1}),
        "Lock.acquire on lock (locked, 1 waiting)",
    ),
    (
        aw("lock", call="Lock.acquire", object={"name": None, "locked": False, "waiters": 0}),
        "Lock.acquire (unlocked, 0 waiting)",
    ),
    (
        aw(
            "lock",
            call="Lock.acquire",
            object={
                "name": "second",
                "locked": True,
                "waiters": 1,
                "holders": ["4"],
                "holder_names": ["transfer-b"],
            },
        ),
        "Lock.acquire on second (locked, 1 waiting), held by transfer-b",
    ),
    (
        aw(
            "lock",
            call="Lock.acquire",
            object={"name": "a", "locked": True, "waiters": 2, "holders_unknown": True},
        ),
        "Lock.acquire on a (locked, 2 waiting), taken before taskscope attached (holder unknown)",
    ),
    (
        aw(
            "semaphore",
            call="Semaphore.acquire",
            object={
                "name": "pool",
                "value": 0,
                "waiters": 9,
                "holders": ["1", "2", "3", "4", "5"],
                "holder_names": ["c-1", "c-2", "c-3", "c-4", "c-5"],
                "holders_more": 2,
            },
        ),
        "Semaphore.acquire on pool (value 0, 9 waiting), held by c-1, c-2, c-3 and 4 more",
    ),
    (
        aw(
            "semaphore",
            call="Semaphore.acquire",
            object={
                "name": "gate",
                "value": 0,
                "waiters": 1,
                "holders": ["1"],
                "holder_names": ["c-1"],
                "holders_partial": True,
            },
        ),
        "Semaphore.acquire on gate (value 0, 1 waiting), held by c-1, maybe more",
    ),
    (
        aw(
            "semaphore", call="Semaphore.acquire", object={"name": "gate", "value": 0, "waiters": 1}
        ),
        "Semaphore.acquire on gate (value 0, 1 waiting)",
    ),
    (
        aw(
            "executor",
            call="to_thread",
            object={"function": "fetch", "queued": True, "workers": 6, "busy": 6},
        ),
        "to_thread fetch, queued: 6 of 6 threads busy",
    ),
    (
        aw("executor", call="run_in_executor", object={"queued": True}),
        "run_in_executor, queued",
    ),
    (
        aw(
            "executor",
            call="loop.getaddrinfo",
            object={"address": "db.internal:5432", "queued": True, "workers": 6, "busy": 6},
        ),
        "loop.getaddrinfo db.internal:5432, queued: 6 of 6 threads busy",
    ),
    (
        aw("executor", call="to_thread", object={"function": "fetch", "thread": "asyncio_0"}),
        "to_thread fetch in asyncio_0",
    ),
    (
        aw(
            "executor",
            call="to_thread",
            object={
                "function": "partial(run)",
                "thread": "AnyIO worker thread",
                "thread_stack": [
                    {"function": "run", "file": "/venv/site-packages/lib/x.py", "line": 3},
                    {"function": "report", "file": "/srv/app.py", "line": 8},
                    {"function": "Event.wait", "file": "/usr/lib/python3.13/threading.py"},
                ],
            },
        ),
        "to_thread partial(run) in AnyIO worker thread, at report() app.py:8",
    ),
    (
        aw(
            "semaphore",
            call="CapacityLimiter.acquire",
            object={"name": None, "thread_limiter": True, "value": 0, "waiters": 4},
        ),
        "CapacityLimiter.acquire on the default thread limiter (value 0, 4 waiting)",
    ),
    (
        aw(
            "semaphore",
            call="CapacityLimiter.acquire",
            object={"name": "pool", "thread_limiter": True, "value": 0, "waiters": 4},
        ),
        "CapacityLimiter.acquire on pool (value 0, 4 waiting)",
    ),
    (
        aw(
            "lock",
            call="Lock.acquire",
            object={"name": "a", "locked": True, "waiters": 1, "holders_gone": True},
        ),
        "Lock.acquire on a (locked, 1 waiting), held by a task that has finished",
    ),
    (
        aw(
            "semaphore",
            call="BoundedSemaphore.acquire",
            object={"name": "bsem", "value": 0, "waiters": 1},
        ),
        "BoundedSemaphore.acquire on bsem (value 0, 1 waiting)",
    ),
    (
        aw("condition", call="Condition.wait_for", object={"name": "cond", "waiters": 2}),
        "Condition.wait_for on cond (2 waiting)",
    ),
    (
        aw("event", call="Event.wait", object={"name": "event", "set": False, "waiters": 1}),
        "Event.wait on event (not set, 1 waiting)",
    ),
    (
        aw("barrier", call="Barrier.wait", object={"name": "b", "parties": 3, "waiting": 1}),
        "Barrier.wait on b (1/3 arrived)",
    ),
    (
        aw("stream_read", call="StreamReader.readline", peer="127.0.0.1:80"),
        "StreamReader.readline from 127.0.0.1:80",
    ),
    (aw("stream_read", call="StreamReader.read", peer=None), "StreamReader.read"),
    (
        aw(
            "pool",
            call="TCPConnector.connect",
            peer="api.example.com:443",
            object={
                "type": "TCPConnector",
                "limit": 100,
                "in_use": 100,
                "limit_per_host": 0,
                "waiters": 7,
            },
        ),
        "a connection from TCPConnector to api.example.com:443 (all 100 in use, 7 waiting)",
    ),
    (
        aw(
            "pool",
            call="TCPConnector.connect",
            peer="10.0.0.1:80",
            object={"limit": 100, "in_use": 3, "limit_per_host": 2, "host_in_use": 2},
        ),
        "a connection from TCPConnector.connect to 10.0.0.1:80 (all 2 to this host in use)",
    ),
    (
        aw("pool", call="TCPConnector.connect", peer=None, object={"limit": 0, "in_use": 4}),
        "a connection from TCPConnector.connect (4 in use)",
    ),
    (
        aw("pool", call="TCPConnector.connect", object={}),
        "a connection from TCPConnector.connect (?)",
    ),
    (
        aw("stream_drain", call="StreamWriter.drain", peer="[::1]:8080"),
        "StreamWriter.drain to [::1]:8080",
    ),
    (
        aw("socket", call="loop.sock_recv", peer="10.0.0.1:5", object={"fd": 7}),
        "loop.sock_recv on fd 7 (10.0.0.1:5)",
    ),
    (aw("socket", call="loop.sock_accept", peer=None, object={"fd": -1}), "loop.sock_accept"),
    (
        aw("executor", call="to_thread", object={"function": "work", "thread": "asyncio_0"}),
        "to_thread work in asyncio_0",
    ),
    (aw("executor", call="to_thread", object={"function": "work"}), "to_thread work"),
    (
        aw("executor", call="run_in_executor", object={"function": "f", "thread": "pool_1"}),
        "run_in_executor f in pool_1",
    ),
    (aw("executor", call="run_in_executor", object={}), "run_in_executor"),
    (
        aw(
            "subprocess",
            call="Process.wait",
            object={"pid": 12, "program": "sleep", "verb": "wait"},
        ),
        "subprocess 12 sleep wait",
    ),
    (
        aw("subprocess", object={"pid": 12, "program": None, "verb": "communicate"}),
        "subprocess 12 communicate",
    ),
    (
        aw(
            "server",
            call="Server.serve_forever",
            object={"addresses": ["127.0.0.1:80", "[::1]:80"]},
        ),
        "Server.serve_forever on 127.0.0.1:80, [::1]:80",
    ),
    (aw("server", call="Server.serve_forever", object={"addresses": []}), "Server.serve_forever"),
    (aw("taskgroup", object={"size": 1}), "TaskGroup (1 task)"),
    (aw("taskgroup", object={"size": 3}), "TaskGroup (3 tasks)"),
    (
        aw("wait", object={"count": 2, "return_when": "ALL_COMPLETED"}),
        "asyncio.wait (2 awaitables, ALL_COMPLETED)",
    ),
    (aw("wait", object={"count": None, "return_when": None}), "asyncio.wait"),
    (aw("as_completed"), "as_completed"),
    (aw("wait_for", object={"awaitable": "step"}), "wait_for step"),
    (
        aw(
            "wait_for",
            object={"awaitable": "slow_step", "inner_kind": "sleep"},
            inner=aw("sleep"),
            seconds_left=5.0,
            deadline_in=1.5,
        ),
        "wait_for slow_step: sleep, 5.0 s left, timeout in 1.5 s",
    ),
    (
        aw(
            "wait_for",
            object={"awaitable": "Event.wait", "inner_kind": "event"},
            inner=aw("event", call="Event.wait", object={"set": False, "waiters": 4}),
            deadline_in=2.0,
        ),
        "wait_for Event.wait (not set, 4 waiting), timeout in 2.0 s",
    ),
    (
        aw(
            "wait_for",
            object={"awaitable": None},
            inner=aw("shield", object={"task": "job-3"}),
            deadline_in=0.5,
        ),
        "wait_for shield task job-3, timeout in 0.5 s",
    ),
    (aw("task", ["2"], object={"task": "waited-task"}), "task waited-task"),
    (aw("tasks", ["2", "3"]), "2 tasks"),
    (aw("gather", object={"count": 2, "done": 0}), "gather (2 awaitables, 0 done)"),
    (aw("shield", object={"task": "shielded"}), "shield task shielded"),
    (aw("shield"), "shield"),
    (aw("future", call="Future", object={"name": "parked"}), "Future parked"),
    (
        aw("future", call="Future", object={"name": None, "created_at": "app.py:3"}),
        "Future created at app.py:3",
    ),
    (
        aw("future", object={"module": "__main__", "type": "Ticket", "id": "0x7f"}),
        "<__main__.Ticket at 0x7f>",
    ),
    (aw("future", object={"module": "m", "type": "Odd", "id": None}), "<m.Odd>"),
    (
        aw("unknown", object={"function": "handler", "read_only": True}),
        "? in handler() (read-only look)",
    ),
]


@pytest.mark.parametrize(("facts", "sentence"), SENTENCES, ids=[s for _f, s in SENTENCES])
def test_each_kind_is_said_from_its_facts(facts: dict[str, Any], sentence: str) -> None:
    assert schema_text(facts) == sentence


def test_retrieval_is_said_only_when_known() -> None:
    assert retrieval_words(None) == ""
    assert retrieval_words(True) == "its exception was retrieved"
    assert "never retrieved" in retrieval_words(False)


def test_a_task_in_an_await_cycle_says_so_after_its_countdown() -> None:
    facts = aw("task", ["2"], object={"task": "b"}, deadline_in=3.0)
    assert schema_text(facts, in_cycle=True) == "task b, timeout in 3.0 s (await cycle)"


def test_overdue_timers_are_said_overdue() -> None:
    assert (
        awaiting_text(aw("sleep"), sleep_overdue=0.5, deadline_overdue=2.0)
        == "sleep, overdue 0.5 s, timeout overdue 2.0 s"
    )


def test_fill_texts_gives_every_awaiting_its_words_and_cycle_members_their_own() -> None:
    shared = aw("task", ["1"], object={"task": "a"})
    body: dict[str, Any] = {
        "tasks": [
            {"id": "1", "awaiting": aw("sleep", seconds_left=2.0)},
            {"id": "2", "awaiting": shared},
            {"id": "3", "awaiting": shared},
            {"id": "4", "awaiting": None},
        ],
        "cycles": [["1", "2"]],
    }
    fill_texts(body, "tasks")
    texts = [(record["awaiting"] or {}).get("text") for record in body["tasks"]]
    assert texts == ["sleep, 2.0 s left (await cycle)", "task a (await cycle)", "task a", None]
    # the description task 3 shares was not changed by task 2's mark
    assert shared["text"] == "task a"


def snapshot(*tasks: dict[str, Any], cycles: list[list[str]] | None = None) -> Any:
    return {
        "schema": 1,
        "pid": 42,
        "python": "3.12.1",
        "taken_at": 2000.0,
        "history_limit": 0,
        "loops": [
            {
                "id": "L1",
                "thread_id": 1,
                "thread_name": "MainThread",
                "running": True,
                "closed": False,
                "blocked_for": None,
                "lag": 0.0012,
                "blocking_stack": [],
                "type": "_UnixSelectorEventLoop",
                "tasks": len(tasks),
            }
        ],
        "tasks": list(tasks),
        "cycles": cycles or [],
    }


def task(task_id: str, name: str, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": task_id,
        "loop": "L1",
        "name": name,
        "state": "pending",
        "coro": name,
        "stack": [{"function": name, "file": "app.py", "line": int(task_id) * 10}],
        "awaiting": None,
        "awaited_by": [],
        "parent": None,
        "created_at": 1990.0,
        "finished_at": None,
    }
    record.update(extra)
    return record


def service() -> TaskModel:
    return TaskModel.from_snapshot(
        snapshot(
            task("1", "main", awaiting=aw("taskgroup", ["2", "3"], object={"size": 2})),
            task(
                "2",
                "worker",
                awaiting=aw(
                    "queue_get", call="Queue.get", object={"name": "jobs", "size": 0, "maxsize": 0}
                ),
                awaited_by=["1"],
                parent="1",
            ),
            task(
                "3",
                "ticker",
                awaiting=aw("sleep", seconds_left=10.0, deadline_in=4.0),
                awaited_by=["1"],
                parent="1",
                created_at=1999.0,
            ),
            task("4", "a", awaiting=aw("task", ["5"], object={"task": "b"}), awaited_by=["5"]),
            task("5", "b", awaiting=aw("task", ["4"], object={"task": "a"}), awaited_by=["4"]),
            cycles=[["4", "5"]],
        )
    )


def test_task_words_count_down_to_now_and_mark_cycles() -> None:
    model = service()
    ticker, member = model.tasks["3"], model.tasks["4"]
    assert task_doing(ticker, now=2003.0) == "sleep, 7.0 s left, timeout in 1.0 s"
    assert task_doing(member, now=2003.0, in_cycle=True) == "task b (await cycle)"


def test_ps_table_lines() -> None:
    lines = ps_table(service(), now=2003.0).splitlines()
    assert lines == [
        "ID  STATE    NAME    CORO      AGE    AWAITING",
        "1   pending  main    main()    13.0s  TaskGroup (2 tasks)",
        "2   pending  worker  worker()  13.0s  Queue.get on jobs (0 items)",
        "3   pending  ticker  ticker()  4.0s   sleep, 7.0 s left, timeout in 1.0 s",
        "4   pending  a       a()       13.0s  task b (await cycle)",
        "5   pending  b       b()       13.0s  task a (await cycle)",
    ]


def test_ps_footnotes_go_by_the_tasks_shown() -> None:
    # A task of a first loop, seen once before it ended; a later loop's tasks all tracked
    pending = task("3", "second", created_at=1995.0)
    old = task("1", "first", state="done", finished_at=1999.0, result="None")
    old |= {"created_at": None, "first_seen_at": 1990.0}
    model = TaskModel.from_snapshot({**snapshot(pending, old), "history_since": 1990.0})
    note = "≥: an age counted from the agent's first look"
    # the finished task is not listed: nothing in the table is marked ≥, so no footnote
    assert note not in ps_table(model, now=2003.0)
    assert "≥" not in ps_table(model, now=2003.0)
    # listed (`ps -a`), it is marked, and the footnote says what the mark means
    listed = ps_table(model, include_finished=True, now=2003.0)
    assert "≥" in listed.splitlines()[-2] and note in listed


def test_an_empty_ps_table_says_what_is_known() -> None:
    finished = task("7", "job", state="done", finished_at=1999.0, result="None")
    only_finished = TaskModel.from_snapshot({**snapshot(finished), "history_since": 1980.0})
    at = time.strftime("%H:%M:%S", time.localtime(1980.0))
    assert no_tasks_note(only_finished, include_finished=False) == (
        f"no task is pending; 1 finished since the agent came at {at} (`ps -a` lists them)"
    )
    assert no_tasks_note(only_finished, include_finished=True) is None  # the table lists it
    assert no_tasks_note(TaskModel.from_snapshot(snapshot()), include_finished=True) == (
        "no task is pending, and none has finished"  # the agent came first: all are known
    )
    assert no_tasks_note(service(), include_finished=False) is None
    # `ps -a` with tasks pending and none finished: why no finished one is listed
    pending = snapshot(task("1", "main"))
    attached = TaskModel.from_snapshot({**pending, "history_since": 1980.0, "history_limit": 9})
    assert no_tasks_note(attached, include_finished=True) == (
        f"none finished since the agent came at {at} (tasks that ended before are not known)"
    )
    assert no_tasks_note(attached, include_finished=False) is None
    installed = TaskModel.from_snapshot({**pending, "history_limit": 9})
    assert no_tasks_note(installed, include_finished=True) == "none has finished"
    # no history kept: nothing to say
    assert no_tasks_note(TaskModel.from_snapshot(pending), include_finished=True) is None


def test_the_tree_says_why_trio_creators_are_unknown() -> None:
    def trio_tree(**loop_facts: Any) -> str:
        body = snapshot(task("2", "child", first_seen_at=1995.0))
        body["loops"][0] |= {"type": "trio", **loop_facts}
        return tree_text(TaskModel.from_snapshot(body), ["app.py"], now=2003.0, width=120)

    # a run found just after an attach, not watched yet: its next turn takes the instrument
    assert "1 trio task spawned before the agent came: who created it and when is unknown " in (
        trio_tree(spawns_watch_pending=True)
    )
    # watched from some time: spawned before then
    at = time.strftime("%H:%M:%S", time.localtime(1998.0))
    assert f"1 trio task spawned before the agent watched its run at {at}" in trio_tree(
        spawns_seen_since=1998.0
    )
    # neither: tasks are not tracked
    assert "trio creations are not tracked (track_tasks off)" in trio_tree()


def test_two_loops_of_one_thread_are_told_apart_once() -> None:
    # GIVEN two loops of the main thread (a test's loop left unclosed, then asyncio.run's)
    body = snapshot(task("1", "leaked"), task("2", "main", loop="L2"))
    second = dict(body["loops"][0], id="L2", tasks=1)
    body["loops"][0] |= {"running": False, "tasks": 1}
    body["loops"].append(second)
    model = TaskModel.from_snapshot(body)
    lines = tree_text(model, ["app.py"], now=2003.0, width=100).splitlines()
    # THEN the header and the tree name the second by its id, once
    assert lines[0] == (
        "pid 42 · python 3.12.1 · app.py · loop MainThread stopped · loop MainThread (L2) "
        "running, lag 1.2 ms"
    )
    assert "── loop MainThread (L1) · 1 pending ──" in lines
    assert "── loop MainThread (L2) · 1 pending ──" in lines


def test_tree_lines() -> None:
    lines = tree_text(service(), ["app.py"], now=2003.0, width=80).splitlines()
    assert lines == [
        "pid 42 · python 3.12.1 · app.py · loop MainThread running, lag 1.2 ms",
        "main       main()    awaiting TaskGroup (2 tasks)                          13.0s",
        "├─ worker  worker()  awaiting Queue.get on jobs (0 items)                  13.0s",
        "└─ ticker  ticker()  awaiting sleep, 7.0 s left, timeout in 1.0 s           4.0s",
        "a          a()       awaiting task b   ⟳ await cycle                       13.0s",
        "└─ b       b()       awaiting task a   ⟳ await cycle                       13.0s",
        "   └─ a    a()       ⟲ back to a above   ⟳ await cycle                     13.0s",
    ]


def test_a_tree_line_too_long_for_the_width_keeps_its_age_two_spaces_apart() -> None:
    # GIVEN a worker whose wait is known, on a terminal too narrow for its line
    body = snapshot(
        task(
            "2",
            "worker",
            awaiting=aw(
                "queue_get", call="Queue.get", object={"name": "jobs", "size": 0, "maxsize": 0}
            ),
            waiting_seen_at=2001.6,
        )
    )
    model = TaskModel.from_snapshot(body)
    line = tree_text(model, ["app.py"], now=2003.0, width=40).splitlines()[1]
    # THEN the wait and the age do not run together as one phrase
    assert line.endswith(", for ≥1.4s  13.0s"), line


def test_task_text_says_what_it_awaits() -> None:
    text = task_text(service().tasks["2"], service(), pid=42)
    assert text.splitlines()[:4] == [
        "task 2 worker in process 42: pending, worker()",
        "awaiting: Queue.get on jobs (0 items)",
        "awaited by: 1 (main)",
        "created by: 1 (main)",
    ]


def test_group_labels_drop_what_differs_between_tasks() -> None:
    reader = aw("stream_read", call="StreamReader.read", peer="10.0.0.1:5")
    assert group_label(reader) == "StreamReader.read"
    assert group_label(aw("task", ["3"], object={"task": "x"})) == "another task"
    assert group_label(aw("sleep", seconds_left=3.0)) == "sleep"
    timed = aw("lock", call="Lock.acquire", object={"name": "l", "locked": True, "waiters": 2})
    assert group_label({**timed, "deadline_in": 3.0}) == "Lock.acquire on l (locked, 2 waiting)"
    assert shared_words(["wait_for shield task job-1", "wait_for shield task job-2"]) == (
        "wait_for shield task …"
    )
    assert format_duration(724) == "12m04s"


def test_the_agent_sends_facts_without_words() -> None:
    """The agent's records, raw and in the compact encoding, and the plain schema-1 form it
    serves, have no `text`: only `taskscope.words` (on the client) says them."""

    async def main() -> None:
        tracker, tasks, _gate = await _population()
        tasks += await _countdowns()
        raw = SnapshotBuilder(tracker).build_raw()
        awaitings = [record["awaiting"] for record in raw["tasks"] if record["awaiting"]]
        assert len(awaitings) > 10
        assert not any("text" in awaiting for awaiting in awaitings)
        wire = json.loads(CompactEncoder().encode({"type": "snapshot", "snapshot": raw}))
        awaits = wire["snapshot"]["awaits"]
        assert awaits and not any("text" in item for item in awaits)
        plain = materialize_body(dict(raw), "tasks")
        assert not any("text" in (record["awaiting"] or {}) for record in plain["tasks"])
        await _teardown(tracker, tasks)

    asyncio.run(main())


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_model_keeps_data_without_parsing_words() -> None:
    assert "re" not in _imports(PACKAGE / "model.py")
    assert "re" not in _imports(PACKAGE / "report.py")


#: Pieces of awaiting sentences: only words.py may hold them (docstrings aside).
SENTENCE_PIECES = ("await cycle", " s left", "timeout in", " awaitables", " items")


def _string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_module_but_words_makes_await_sentences() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}: {text!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "words.py"
        for text in _string_constants(path)
        if any(piece in text for piece in SENTENCE_PIECES)
    ]
    assert offenders == []


def test_grouped_rows_name_each_await_site_by_the_words_its_tasks_share() -> None:
    def worker(task_id: str, job: str, line: int) -> dict[str, Any]:
        return task(
            task_id,
            f"worker-{task_id}",
            coro="worker",
            stack=[{"function": "worker", "file": "app.py", "line": line}],
            awaiting=aw(
                "wait_for",
                [job],
                object={"awaitable": None},
                inner=aw("shield", object={"task": f"job-{job}"}),
                deadline_in=float(task_id),
            ),
        )

    model = TaskModel.from_snapshot(
        snapshot(worker("1", "7", 84), worker("2", "8", 84), worker("3", "9", 99))
    )
    rows = [(row.count, row.coro, row.what, row.site) for row in group_rows(model.await_sites())]
    assert rows == [
        (2, "worker", "wait_for shield task …", "app.py:84"),
        (1, "worker", "wait_for shield task job-9", "app.py:99"),
    ]


def test_ages_and_pending_cancels_in_words() -> None:
    model = TaskModel.from_snapshot(
        snapshot(
            task("1", "old", created_at=None, first_seen_at=1990.0),
            task("2", "asked", cancel_requested_at=2001.0),
        )
    )
    assert age_words(*model.tasks["1"].known_age(2003.0)) == "≥13.0s"
    assert age_words(None, False) == "?" and age_words(None, False, unknown="") == ""
    assert cancel_note(model.tasks["2"], 2003.5) == "cancel requested 2.5 s ago"
    assert cancel_note(model.tasks["1"], 2003.5) == ""


def test_the_dashboard_filter_matches_the_words_of_what_a_task_awaits() -> None:
    from taskscope.ui.task_display import matches

    model = service()
    worker, ticker = model.tasks["2"], model.tasks["3"]
    assert matches(worker, "on JOBS") and not matches(ticker, "jobs")
    assert matches(ticker, "timeout in 4.0") and matches(ticker, "timeout in 4.0")  # cached


def lock_wait(object_id: str, name: str, holder: str) -> dict[str, Any]:
    facts = {"type": "Lock", "id": object_id, "name": name, "locked": True}
    return aw("lock", call="Lock.acquire", object={**facts, "holders": [holder], "waiters": 1})


def test_two_objects_of_one_name_are_lettered_alike_in_every_view() -> None:
    # GIVEN worker(a, b) and worker(b, a): each waits on the lock it calls `lock_b`, held by
    # the other, and a third task waits on the first's lock under another name
    model = TaskModel.from_snapshot(
        snapshot(
            task("1", "w1", awaiting=lock_wait("0xb", "lock_b", "3")),
            task("3", "w2", awaiting=lock_wait("0xa", "lock_b", "1")),
            task("4", "other", awaiting=lock_wait("0xb", "b", "3")),
        )
    )
    # THEN the lock task 1 holds is A wherever it is named, the other B
    assert model.object_letters == {"0xa": "A", "0xb": "B"}
    w1, w2, other = (model.tasks[task_id] for task_id in ("1", "3", "4"))
    assert task_doing(w1, 2000.0, letter=model.letter_of(w1)).startswith(
        "Lock.acquire on lock_b (Lock B, locked, 1 waiting)"
    )
    assert model.letter_of(other) == "B"
    assert task_doing(w2, 2000.0).startswith("Lock.acquire on lock_b (locked")  # no letter given
    table = ps_table(model, now=2003.0)
    assert "on lock_b (Lock B, locked, 1 waiting)" in _line_of(table, "w1")
    assert "on lock_b (Lock A, locked, 1 waiting)" in _line_of(table, "w2")
    assert "on b (Lock B, locked, 1 waiting)" in _line_of(table, "other")
    tree = tree_text(model, ["app.py"], now=2003.0, width=200)
    assert "on lock_b (Lock A," in _line_of(tree, "w2")
    assert "awaiting: Lock.acquire on lock_b (Lock B," in task_text(w1, model)
    # dump's words, from the snapshot alone
    body = snapshot(
        task("1", "w1", awaiting=lock_wait("0xb", "lock_b", "3")),
        task("3", "w2", awaiting=lock_wait("0xa", "lock_b", "1")),
    )
    fill_texts(body, "tasks")
    assert [record["awaiting"]["text"][:34] for record in body["tasks"]] == [
        "Lock.acquire on lock_b (Lock B, lo",
        "Lock.acquire on lock_b (Lock A, lo",
    ]
    # one object under one name, or two objects under two names: no letter
    single = TaskModel.from_snapshot(
        snapshot(
            task("1", "w1", awaiting=lock_wait("0xb", "lock_b", "3")),
            task("2", "w3", awaiting=lock_wait("0xb", "lock_b", "3")),
            task("3", "w2", awaiting=lock_wait("0xa", "lock_a", "1")),
        )
    )
    assert single.object_letters == {}
    assert "on lock_b (locked, 1 waiting)" in _line_of(ps_table(single, now=2003.0), "w1")


def test_a_delta_that_makes_a_name_shared_redraws_the_task_already_there() -> None:
    model = TaskModel.from_snapshot(
        snapshot(task("1", "w1", awaiting=lock_wait("0xb", "lock_b", "3")))
    )
    assert model.object_letters == {}
    second = task("3", "w2", awaiting=lock_wait("0xa", "lock_b", "1"))
    model.apply_delta(
        {
            "taken_at": 2001.0,
            "loops": snapshot()["loops"],
            "changed": [second],
            "removed": [],
            "cycles": [],
        }
    )
    assert model.object_letters == {"0xa": "A", "0xb": "B"}
    # task 1's record did not change, but its words did: the dashboard draws its row again
    assert model.last_changed == {"1", "3"}
    model.apply_delta(
        {
            "taken_at": 2002.0,
            "loops": snapshot()["loops"],
            "changed": [],
            "removed": ["3"],
            "cycles": [],
        }
    )
    assert model.object_letters == {}
    assert model.last_changed == {"1"}
    assert model.letter_of(model.tasks["1"]) is None


def _line_of(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if name in line.split())


def test_a_delta_letters_its_objects_as_the_snapshot_before_it() -> None:
    # GIVEN a client's snapshot with two locks called lock_b, then a delta in which only one
    # of the two waiters changed (its lock's waiters grew)
    named = NamedWaits()
    body = snapshot(
        task("1", "w1", awaiting=lock_wait("0xb", "lock_b", "3")),
        task("3", "w2", awaiting=lock_wait("0xa", "lock_b", "1")),
    )
    fill_texts(body, "tasks", named)
    moved = task("3", "w2", awaiting=lock_wait("0xa", "lock_b", "1"))
    delta = {"changed": [moved], "removed": [], "cycles": []}
    fill_texts(delta, "changed", named)
    # THEN the delta's words still letter it: the other lock_b is in the snapshot
    assert moved["awaiting"]["text"].startswith("Lock.acquire on lock_b (Lock A, locked")
    # AND once the other waiter is gone, the name is its own again
    again = task("3", "w2", awaiting=lock_wait("0xa", "lock_b", "1"))
    fill_texts({"changed": [again], "removed": ["1"], "cycles": []}, "changed", named)
    assert again["awaiting"]["text"].startswith("Lock.acquire on lock_b (locked")
    # AND without what came before, a delta letters among its own records only
    alone = task("3", "w2", awaiting=lock_wait("0xa", "lock_b", "1"))
    fill_texts({"changed": [alone], "removed": [], "cycles": []}, "changed")
    assert alone["awaiting"]["text"].startswith("Lock.acquire on lock_b (locked")


@pytest.mark.parametrize("holders", [list, tuple])
def test_objects_of_one_name_are_lettered_by_their_holders_not_their_addresses(
    holders: Any,
) -> None:
    # (a list on the wire, a tuple in a snapshot the agent makes for its own process)
    def waiting(object_id: str, holder: str) -> dict[str, Any]:
        description = lock_wait(object_id, "second", holder)
        description["object"]["holders"] = holders([holder])
        return description

    # the lock at the higher address is held by the lower task: it is Lock A
    named = [named_object(waiting("0xa", "3")), named_object(waiting("0xb", "1"))]
    assert object_letters(n for n in named if n is not None) == {"0xb": "A", "0xa": "B"}


def test_a_snapshot_with_no_shared_name_drops_the_letters_of_the_one_before() -> None:
    model = TaskModel.from_snapshot(
        snapshot(
            task("1", "w1", awaiting=lock_wait("0xb", "lock_b", "3")),
            task("3", "w2", awaiting=lock_wait("0xa", "lock_b", "1")),
        )
    )
    assert model.object_letters == {"0xa": "A", "0xb": "B"}
    # WHEN the next snapshot has w1 waiting on the same lock under no name at all (a lock
    # waited on through an expression the agent cannot name), and w2 gone
    unnamed = lock_wait("0xb", "", "3")
    model.apply_snapshot(snapshot(task("1", "w1", awaiting=unnamed)))
    # THEN no letter is left over
    assert model.object_letters == {}
    assert model.letter_of(model.tasks["1"]) is None
    assert "(Lock" not in ps_table(model, now=2003.0)


def test_objects_are_lettered_within_their_process_in_a_look_at_several() -> None:
    # GIVEN a look at two workers (ids `PID:N`): each has its own `lock_b` (at one address in
    # both, as a fork leaves it), and the second worker a second lock_b of its own
    def of_worker(task_id: str, name: str, awaiting: dict[str, Any]) -> dict[str, Any]:
        record = task("1", name, awaiting=awaiting)
        record["id"] = task_id
        return record

    model = TaskModel.from_snapshot(
        snapshot(
            of_worker("11:1", "w1", lock_wait("0xb", "lock_b", "2")),
            of_worker("12:1", "w1", lock_wait("0xb", "lock_b", "2")),
            of_worker("12:3", "w2", lock_wait("0xa", "lock_b", "1")),
        )
    )
    first, second, third = (model.tasks[task_id] for task_id in ("11:1", "12:1", "12:3"))
    # THEN the first worker's lock has no letter: no other lock of its process has its name
    assert model.letter_of(first) is None
    # AND the second worker's two are lettered, as the same address in another process is not
    assert (model.letter_of(second), model.letter_of(third)) == ("B", "A")
    body = snapshot(
        of_worker("11:1", "w1", lock_wait("0xb", "lock_b", "2")),
        of_worker("12:1", "w1", lock_wait("0xb", "lock_b", "2")),
    )
    fill_texts(body, "tasks")
    assert "(Lock" not in json.dumps(body)


def test_a_group_of_tasks_waiting_on_two_locks_of_one_name_does_not_name_one_lock() -> None:
    # GIVEN worker(a, b) and worker(b, a), parked at one line, each on the lock it calls
    # `lock_b`, and two more workers at another line, both on Lock A
    def worker(task_id: str, name: str, lock: str, holder: str, line: int) -> dict[str, Any]:
        stack = [{"function": "worker", "file": "app.py", "line": line}]
        return task(
            task_id, name, coro="worker", stack=stack, awaiting=lock_wait(lock, "lock_b", holder)
        )

    model = TaskModel.from_snapshot(
        snapshot(
            worker("1", "w1", "0xb", "3", 12),
            worker("3", "w2", "0xa", "1", 12),
            worker("5", "w3", "0xa", "1", 20),
            worker("6", "w4", "0xa", "1", 20),
        )
    )
    rows = {row.site: row.what for row in group_rows(model.await_sites(), model.object_letters)}
    # THEN the group at line 12 says where its two tasks' words part (which lock), and the
    # group at line 20 names its one lock by its letter
    assert rows == {
        "app.py:12": "Lock.acquire on lock_b (Lock …",
        "app.py:20": "Lock.acquire on lock_b (Lock A, locked, 1 waiting), held by 1",
    }
    # without the letters, the group at line 12 reads as if its tasks waited on one lock
    plain = {row.site: row.what for row in group_rows(model.await_sites())}
    assert plain["app.py:12"] == "Lock.acquire on lock_b (locked, 1 waiting), held by …"
