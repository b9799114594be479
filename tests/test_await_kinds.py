"""Every await kind, built for real: `tests/targets/await_kinds.py` suspends one named task in
each situation at once; one snapshot of it is checked task by task, so a failing test names
the await kind the agent got wrong."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskscope.client import AgentClient
from tests.helpers import run_cli

TARGET = Path(__file__).parent / "targets" / "await_kinds.py"
READY_TIMEOUT = 30.0


@dataclass
class Situation:
    """One snapshot of the target, with lookups by task name."""

    snapshot: dict[str, Any]
    facts: dict[str, Any]
    marker: Path

    def task(self, name: str) -> dict[str, Any]:
        found = [task for task in self.snapshot["tasks"] if task["name"] == name]
        assert len(found) == 1, f"{len(found)} tasks named {name!r}"
        return found[0]

    def id_of(self, name: str) -> str:
        return str(self.task(name)["id"])

    def ids_of(self, *names: str) -> set[str]:
        return {self.id_of(name) for name in names}

    def awaiting(self, name: str) -> dict[str, Any]:
        awaiting = self.task(name)["awaiting"]
        assert awaiting is not None, f"{name} waits for nothing"
        return dict(awaiting)

    def functions(self, name: str) -> list[str]:
        return [frame["function"] for frame in self.task(name)["stack"]]


def _wait_ready(process: subprocess.Popen[bytes], ready: Path) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _out, err = process.communicate()
            raise AssertionError(f"target exited ({process.returncode}): {err.decode()}")
        if ready.exists():
            return dict(json.loads(ready.read_text()))
        time.sleep(0.02)  # polling the ready file, bounded by the deadline
    raise AssertionError(f"target not ready after {READY_TIMEOUT} s")


@pytest.fixture(scope="module")
def situation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Situation]:
    workdir = tmp_path_factory.mktemp("await_kinds")
    ready = workdir / "ready.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "taskscope.agent.launch", str(TARGET), str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=workdir,
    )
    try:
        facts = _wait_ready(process, ready)
        assert facts["pid"] == process.pid
        client = AgentClient(process.pid)
        client.connect()
        try:
            snapshot = dict(client.snapshot())
        finally:
            client.close()
        yield Situation(snapshot, facts, Path(f"{ready}.app-code-called"))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()
        try:
            os.kill(int(json.loads(ready.read_text())["child_pid"]), signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass  # already reaped by the target's own clean-up


# name, kind, full-text pattern, functions that the stack holds in this order (the last one is
# the frame where the task is suspended; None: which frame is last depends on the version).
CASES = [
    ("waits-on-task", "task", r"task waited-task", ["waits_on_task"]),
    ("gather-parent", "gather", r"gather \(2 awaitables, 0 done\)", ["gather_parent"]),
    (
        "tg-parent",
        "taskgroup",
        r"TaskGroup \(2 tasks\)",
        ["tg_parent", "TaskGroup.__aexit__|TaskGroup._aexit"],
    ),
    ("sleeper", "sleep", r"sleep, \d+ s left", ["sleeper", "sleep"]),
    (
        "timeout-holder",
        "sleep",
        r"sleep, \d+ s left, timeout in \d+ s",
        ["timeout_holder", "sleep"],
    ),
    ("endless-sleeper", "sleep", r"sleep forever", ["endless_sleeper", "sleep"]),
    ("endless-timeout", "sleep", r"sleep, \d+ s left", ["endless_timeout", "sleep"]),
    (
        "queue-joiner",
        "queue_join",
        r"Queue\.join on backlog \(1 unfinished\)",
        ["queue_joiner", "Queue.join", "Event.wait"],
    ),
    ("queue-getter", "queue_get", r"Queue\.get on jobs \(0 items\)", ["queue_getter", "Queue.get"]),
    (
        "queue-putter",
        "queue_put",
        r"Queue\.put on results \(full, 1/1\)",
        ["queue_putter", "Queue.put"],
    ),
    (
        "lock-waiter",
        "lock",
        r"Lock\.acquire on lock \(locked, 1 waiting\), held by main",
        ["lock_waiter", "Lock.acquire"],
    ),
    (
        "sem-waiter",
        "semaphore",
        r"Semaphore\.acquire on sem \(value 0, 1 waiting\)",
        ["sem_waiter", "Semaphore.acquire"],
    ),
    (
        "bsem-waiter",
        "semaphore",
        r"BoundedSemaphore\.acquire on bsem \(value 0, 1 waiting\)",
        ["bsem_waiter", "Semaphore.acquire"],
    ),
    (
        "cond-waiter",
        "condition",
        r"Condition\.wait on cond \(1 waiting\)",
        ["cond_waiter", "Condition.wait"],
    ),
    (
        "event-waiter",
        "event",
        r"Event\.wait on event \(not set, 1 waiting\)",
        ["event_waiter", "Event.wait"],
    ),
    (
        "barrier-waiter",
        "barrier",
        r"Barrier\.wait on barrier \(1/3 arrived\)",
        ["barrier_waiter", "Barrier.wait", "Condition.wait"],
    ),
    (
        "stream-reader",
        "stream_read",
        r"StreamReader\.read from 127\.0\.0\.1:{port}",
        ["stream_reader", "StreamReader.read", "StreamReader._wait_for_data"],
    ),
    (
        "stream-drainer",
        "stream_drain",
        r"StreamWriter\.drain to 127\.0\.0\.1:{port}",
        ["stream_drainer", "StreamWriter.drain", "FlowControlMixin._drain_helper"],
    ),
    (
        "sock-recv",
        "socket",
        r"loop\.sock_recv on fd \d+",
        ["sock_recv", "BaseSelectorEventLoop.sock_recv"],
    ),
    (
        "executor",
        "executor",
        r"run_in_executor blocking_wait in \S+, at blocking_wait\(\) await_kinds.py:66",
        ["executor"],
    ),
    (
        "to-thread",
        "executor",
        r"to_thread blocking_wait in \S+, at blocking_wait\(\) await_kinds.py:66",
        ["to_thread", "to_thread"],
    ),
    (
        "subprocess-waiter",
        "subprocess",
        r"subprocess {child_pid} sleep wait",
        ["subprocess_waiter", "Process.wait", "BaseSubprocessTransport._wait"],
    ),
    (
        "tls-client",
        "socket",
        r"loop\.create_connection TLS handshake on fd \d+ \(127\.0\.0\.1:{port}\)",
        ["tls_client", "open_connection", None],
    ),
    ("bare-future", "future", r"Future parked", ["bare_future"]),
    (
        "custom-awaitable",
        "future",
        r"<__main__\.Ticket at 0x[0-9a-f]+>",
        ["custom_awaitable", "TicketWindow.__await__"],
    ),
    ("shield-parent", "shield", r"shield task shielded", ["shield_parent"]),
    ("shielded-future", "shield", r"shield Future kept", ["shielded_future"]),
    (
        "wait-parent",
        "wait",
        r"asyncio\.wait \(2 awaitables, ALL_COMPLETED\)",
        ["wait_parent", "wait", "_wait"],
    ),
    (
        "wait-for-parent",
        "wait_for",
        r"wait_for slow_step: sleep, \d+ s left, timeout in \d+ s",
        ["wait_for_parent", "wait_for", None],
    ),
    (
        "as-completed-parent",
        "as_completed",
        r"as_completed",
        [
            "as_completed_parent",
            "as_completed.<locals>._wait_for_one|_AsCompletedIterator._wait_for_one",
            "Queue.get",
        ],
    ),
    (
        "asyncgen-consumer",
        "sleep",
        r"sleep, \d+ s left",
        ["asyncgen_consumer", "ticker", "sleep"],
    ),
    ("cycle-a", "task", r"task cycle-b \(await cycle\)", ["cycle_member"]),
    ("cycle-b", "task", r"task cycle-a \(await cycle\)", ["cycle_member"]),
    (
        "server",
        "server",
        r"Server\.serve_forever on 127\.0\.0\.1:{port}",
        ["serve_forever", "Server.serve_forever"],
    ),
]


@pytest.mark.parametrize(("name", "kind", "text", "stack"), CASES, ids=[case[0] for case in CASES])
def test_awaiting_kind_text_and_stack(
    situation: Situation, name: str, kind: str, text: str, stack: list[str | None]
) -> None:
    # GIVEN a task suspended in one kind of await
    task = situation.task(name)
    # THEN the snapshot says which kind, in words naming the object
    awaiting = situation.awaiting(name)
    assert task["state"] == "pending"
    assert awaiting["kind"] == kind
    pattern = text.format(**situation.facts)
    assert re.fullmatch(pattern, awaiting["text"]), awaiting["text"]
    # AND the stack runs from the task's coroutine down to where it is suspended
    functions = situation.functions(name)
    assert functions, "empty stack"
    assert all(frame["file"] and frame["line"] for frame in task["stack"])
    position = -1
    for expected in stack:
        if expected is None:
            continue
        alternatives = set(expected.split("|"))
        later = [
            index
            for index, function in enumerate(functions)
            if index > position and function in alternatives
        ]
        assert later, f"{expected} not in {functions} after position {position}"
        position = later[0]
    if stack[-1] is not None:
        assert functions[-1] in set(stack[-1].split("|")), functions


def test_sleep_says_seconds_left(situation: Situation) -> None:
    awaiting = situation.awaiting("sleeper")
    assert 900 < awaiting["seconds_left"] <= 1000
    assert "deadline_in" not in awaiting


def _no_constant(name: str) -> Any:
    raise AssertionError(f"{name} in the dump: no JSON parser but Python's reads it")


def test_a_timer_that_never_fires_is_no_countdown_and_the_dump_is_strict_json(
    situation: Situation,
) -> None:
    # GIVEN `asyncio.sleep(math.inf)` and `asyncio.timeout(math.inf)`: timers at infinity
    assert situation.awaiting("endless-sleeper")["object"] == {"forever": True}
    assert "seconds_left" not in situation.awaiting("endless-sleeper")
    assert "deadline_in" not in situation.awaiting("endless-timeout")
    # THEN `taskscope dump` writes no Infinity, which JSON has not (jq in strict mode, a
    # browser's JSON.parse, Go's and Rust's parsers refuse it)
    result = run_cli("dump", str(situation.facts["pid"]), "--no-inject")
    assert result.returncode == 0, result.stderr
    dumped = json.loads(result.stdout, parse_constant=_no_constant)
    texts = {task["name"]: (task["awaiting"] or {}).get("text") for task in dumped["tasks"]}
    assert texts["endless-sleeper"] == "sleep forever"


def test_a_recursion_deeper_than_a_stack_still_says_what_it_awaits(situation: Situation) -> None:
    # GIVEN a task 400 coroutines deep, sleeping at the end of its chain
    task = situation.task("deep-recursion")
    # THEN it reads as sleeping, and its stack keeps the outermost and the innermost frames
    assert situation.awaiting("deep-recursion")["kind"] == "sleep"
    stack = task["stack"]
    assert len(stack) == 200
    functions = [frame["function"] for frame in stack]
    assert functions[0] == "recursion" and functions[-1] == "sleep"
    assert all(name == "recursion" for name in functions[:-1])


def test_timeout_deadline(situation: Situation) -> None:
    awaiting = situation.awaiting("timeout-holder")
    assert 400 < awaiting["deadline_in"] <= 500
    assert awaiting["seconds_left"] > 3000


def test_wait_for_deadline(situation: Situation) -> None:
    awaiting = situation.awaiting("wait-for-parent")
    assert 200 < awaiting["deadline_in"] <= 300
    assert awaiting["seconds_left"] > 3000


def test_queue_facts(situation: Situation) -> None:
    getter = situation.awaiting("queue-getter")["object"]
    assert (getter["name"], getter["size"], getter["maxsize"]) == ("jobs", 0, 0)
    putter = situation.awaiting("queue-putter")["object"]
    assert (putter["name"], putter["size"], putter["maxsize"]) == ("results", 1, 1)


@pytest.mark.parametrize("name", ["stream-reader", "stream-drainer"])
def test_stream_peer(situation: Situation, name: str) -> None:
    assert situation.awaiting(name)["peer"] == f"127.0.0.1:{situation.facts['port']}"


def test_subprocess_pid(situation: Situation) -> None:
    assert (
        situation.awaiting("subprocess-waiter")["object"]["pid"] == (situation.facts["child_pid"])
    )


@pytest.mark.parametrize("name", ["executor", "to-thread"])
def test_executor_function(situation: Situation, name: str) -> None:
    assert situation.awaiting(name)["object"]["function"] == "blocking_wait"


def test_custom_future_described_without_application_code(situation: Situation) -> None:
    # The Ticket's __repr__/__str__ leave a marker file if anything calls them.
    assert situation.awaiting("custom-awaitable")["kind"] == "future"
    assert not situation.marker.exists(), situation.marker.read_text()


# waiter, the tasks it waits on (its `awaiting.tasks`; each has it in `awaited_by`)
AWAITED = [
    ("waits-on-task", ["waited-task"]),
    ("gather-parent", ["gather-child-1", "gather-child-2"]),
    ("tg-parent", ["tg-child-1", "tg-child-2"]),
    ("shield-parent", ["shielded"]),
    ("wait-parent", ["wait-child-1", "wait-child-2"]),
    ("as-completed-parent", ["ac-child-1", "ac-child-2"]),
    ("cycle-a", ["cycle-b"]),
    ("cycle-b", ["cycle-a"]),
]


@pytest.mark.parametrize(("waiter", "awaited"), AWAITED, ids=[case[0] for case in AWAITED])
def test_awaiting_tasks_and_awaited_by(
    situation: Situation, waiter: str, awaited: list[str]
) -> None:
    waiter_id = situation.id_of(waiter)
    assert set(situation.awaiting(waiter)["tasks"]) == situation.ids_of(*awaited)
    for name in awaited:
        assert situation.task(name)["awaited_by"] == [waiter_id]


def test_wait_for_inner_task(situation: Situation) -> None:
    # 3.11 runs wait_for's awaitable in an inner task, 3.12+ inline: either way the snapshot
    # links what exists.
    waiter_id = situation.id_of("wait-for-parent")
    inner = [task for task in situation.snapshot["tasks"] if task["parent"] == waiter_id]
    assert len(inner) <= 1
    assert situation.awaiting("wait-for-parent")["tasks"] == [task["id"] for task in inner]
    for task in inner:
        assert task["awaited_by"] == [waiter_id]
        assert task["state"] == "pending"
        assert [frame["function"] for frame in task["stack"]] == ["slow_step", "sleep"]


def test_not_awaited(situation: Situation) -> None:
    for name in ("sleeper", "queue-getter", "lock-waiter", "bare-future", "executor"):
        assert situation.task(name)["awaited_by"] == []


CHILDREN = {
    "gather-parent": ["gather-child-1", "gather-child-2"],
    "tg-parent": ["tg-child-1", "tg-child-2"],
    "wait-parent": ["wait-child-1", "wait-child-2"],
    "as-completed-parent": ["ac-child-1", "ac-child-2"],
}


@pytest.mark.parametrize("creator", sorted(CHILDREN))
def test_parent_is_the_creating_task(situation: Situation, creator: str) -> None:
    for child in CHILDREN[creator]:
        assert situation.task(child)["parent"] == situation.id_of(creator)


def test_parent_of_tasks_created_by_main(situation: Situation) -> None:
    main_id = situation.id_of("main")
    for name in ("sleeper", "gather-parent", "waited-task", "cycle-a", "finished-ok"):
        assert situation.task(name)["parent"] == main_id
    # asyncio.run made the main task before the agent's task factory saw the loop running
    assert situation.task("main")["parent"] is None


def test_cycle_listed(situation: Situation) -> None:
    cycle = sorted(situation.ids_of("cycle-a", "cycle-b"), key=int)
    assert cycle in situation.snapshot["cycles"]
    assert len(situation.snapshot["cycles"]) == 1


def test_finished_tasks_in_history(situation: Situation) -> None:
    ok = situation.task("finished-ok")
    assert (ok["state"], ok.get("result")) == ("done", "42")
    failed = situation.task("finished-failed")
    assert (failed["state"], failed.get("exception")) == ("failed", "ValueError('bad row')")
    cancelled = situation.task("finished-cancelled")
    assert cancelled["state"] == "cancelled"
    assert "result" not in cancelled
    assert "exception" not in cancelled
    for task in (ok, failed, cancelled):
        assert task["awaiting"] is None
        assert task["finished_at"] is not None
