"""The client-side model: applying snapshots and deltas by id, the tree, groups, countdowns."""

from __future__ import annotations

from typing import Any

from taskscope.model import TaskModel
from taskscope.words import format_duration, group_rows, task_doing


def task(task_id: str, name: str, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": task_id,
        "loop": "L1",
        "name": name,
        "state": "pending",
        "coro": name,
        "stack": [],
        "awaiting": None,
        "awaited_by": [],
        "parent": None,
        "created_at": 1000.0,
        "finished_at": None,
    }
    record.update(extra)
    return record


def snapshot(*tasks: dict[str, Any], cycles: list[list[str]] | None = None) -> Any:
    return {
        "schema": 1,
        "pid": 42,
        "python": "3.12.1",
        "taken_at": 2000.0,
        "history_limit": 1000,
        "loops": [
            {
                "id": "L1",
                "thread_id": 1,
                "thread_name": "MainThread",
                "running": True,
                "closed": False,
                "blocked_for": None,
                "lag": 0.001,
                "blocking_stack": [],
                "type": "_UnixSelectorEventLoop",
                "tasks": len(tasks),
            }
        ],
        "tasks": list(tasks),
        "cycles": cycles or [],
    }


def awaiting(kind: str, tasks: list[str] | None = None, **extra: Any) -> Any:
    """A schema-1 description: facts only, as the agent sends them."""
    return {"kind": kind, "tasks": tasks or [], **extra}


def test_delta_updates_tasks_by_id() -> None:
    # GIVEN a model of two tasks
    model = TaskModel.from_snapshot(snapshot(task("1", "a"), task("2", "b")))
    # WHEN a delta changes one, adds one and removes one
    model.apply_delta(
        {
            "taken_at": 2001.0,
            "loops": [],
            "removed": ["2"],
            "cycles": [],
            "changed": [
                task("1", "a", state="done", finished_at=2000.5, result="42"),
                task("3", "c"),
            ],
        }
    )
    # THEN the model has exactly the new picture, and says what changed
    assert set(model.tasks) == {"1", "3"}
    assert model.tasks["1"].state == "done" and model.tasks["1"].result == "42"
    assert model.last_changed == {"1", "3"} and model.last_removed == {"2"}
    assert model.counts() == {"pending": 1, "done": 1, "cancelled": 0, "failed": 0}


def test_tree_nests_under_waiters_then_creators_and_stops_at_cycles() -> None:
    model = TaskModel.from_snapshot(
        snapshot(
            task("1", "main", awaiting=awaiting("taskgroup", ["2", "3"], object={"size": 2})),
            task("2", "worker", awaited_by=["1"], parent="1"),
            task("3", "helper", parent="1"),
            task("4", "child-of-helper", parent="3"),
            task(
                "7",
                "fetch-7",
                awaiting=awaiting("task", ["8"], object={"task": "fetch-8"}),
                awaited_by=["8"],
            ),
            task(
                "8",
                "fetch-8",
                awaiting=awaiting("task", ["7"], object={"task": "fetch-7"}),
                awaited_by=["7"],
            ),
            cycles=[["7", "8"]],
        )
    )
    rows = [(row.depth, row.task.name, row.in_cycle, row.repeated) for row in model.tree()]
    assert rows == [
        (0, "main", False, False),
        (1, "worker", False, False),
        (1, "helper", False, False),
        (2, "child-of-helper", False, False),
        (0, "fetch-7", True, False),
        (1, "fetch-8", True, False),
        (2, "fetch-7", True, True),
    ]
    assert model.subtree("1") == ["1", "2", "3", "4"]


def test_groups_count_tasks_by_coroutine_and_await_site() -> None:
    queue_wait = awaiting(
        "queue_get", call="Queue.get", object={"name": "jobs", "size": 0, "maxsize": 0}
    )
    model = TaskModel.from_snapshot(
        snapshot(
            *(task(str(i), f"w{i}", coro="worker", awaiting=queue_wait) for i in range(1, 4)),
            *(
                task(
                    str(i),
                    f"s{i}",
                    coro="sleeper",
                    awaiting=awaiting("sleep", seconds_left=float(i)),
                )
                for i in range(4, 6)
            ),
        )
    )
    rows = group_rows(model.await_sites())
    assert [(row.coro, row.what, row.count) for row in rows] == [
        ("worker", "Queue.get on jobs (0 items)", 3),
        ("sleeper", "sleep", 2),
    ]


def test_request_tasks_group_by_route_and_the_program_line_they_wait_at() -> None:
    # GIVEN a server's request tasks (its coroutine a library's): two routes, and in one of
    # them tasks parked at two lines of the program's endpoint
    server = {"function": "RequestResponseCycle.run_asgi", "file": SERVER, "line": 412}
    lock = {"function": "Lock.acquire", "file": "/usr/lib/python3.12/asyncio/locks.py", "line": 7}

    def request(task_id: str, path: str, route: str, line: int) -> dict[str, Any]:
        endpoint = {"function": "pay", "file": "/srv/shop.py", "line": line}
        return task(
            task_id,
            f"Task-{task_id}",
            coro="RequestResponseCycle.run_asgi",
            stack=[server, endpoint, lock],
            awaiting=awaiting("lock", call="Lock.acquire", object={"name": "lock"}),
            request={"method": "POST", "path": path, "route": route},
        )

    model = TaskModel.from_snapshot(
        snapshot(
            request("1", "/orders/1/pay", "/orders/{id}/pay", 15),
            request("2", "/orders/2/pay", "/orders/{id}/pay", 15),
            request("3", "/orders/3/pay", "/orders/{id}/pay", 22),
            request("4", "/refunds/4", "/refunds/{id}", 15),
        )
    )
    rows = group_rows(model.await_sites())
    # THEN one line per route and program line, whatever the order or item
    assert [(row.label, row.site, row.count) for row in rows] == [
        ("POST /orders/{id}/pay (RequestResponseCycle.run_asgi)", "/srv/shop.py:15", 2),
        ("POST /orders/{id}/pay (RequestResponseCycle.run_asgi)", "/srv/shop.py:22", 1),
        ("POST /refunds/{id} (RequestResponseCycle.run_asgi)", "/srv/shop.py:15", 1),
    ]


SERVER = "/srv/venv/lib/python3.12/site-packages/uvicorn/protocols/http/h11_impl.py"


def test_a_request_task_is_grouped_by_the_route_its_awaited_handler_matched() -> None:
    # GIVEN Django 5 under uvicorn: each request's server task waits in asyncio.wait for the
    # task Django handles it in, which alone knows the route
    server = {"function": "RequestResponseCycle.run_asgi", "file": SERVER, "line": 412}
    waiting = {"function": "wait", "file": "/usr/lib/python3.12/asyncio/tasks.py", "line": 464}
    view = {"function": "item", "file": "/srv/app/views.py", "line": 9}
    records = []
    for number, path in ((1, "/items/1"), (3, "/items/2")):
        parent, child = str(number), str(number + 1)
        records.append(
            task(
                parent,
                f"Task-{parent}",
                coro="RequestResponseCycle.run_asgi",
                stack=[server, waiting],
                awaiting=awaiting("wait", tasks=[child], object={"count": 2}),
                request={"method": "GET", "path": path},
            )
        )
        records.append(
            task(
                child,
                f"Task-{child}",
                coro="ASGIHandler.handle.<locals>.process_request",
                stack=[view],
                awaiting=awaiting("sleep"),
                request={"method": "GET", "path": path, "route": "/items/<int:item_id>"},
            )
        )
    # AND a server task for another request awaiting a task of a different request
    records.append(
        task(
            "9",
            "Task-9",
            coro="RequestResponseCycle.run_asgi",
            stack=[server, waiting],
            awaiting=awaiting("wait", tasks=["2"], object={"count": 2}),
            request={"method": "GET", "path": "/other"},
        )
    )
    model = TaskModel.from_snapshot(snapshot(*records))
    # THEN the server tasks are grouped by the route their handler tasks matched, the other
    # one by itself
    rows = {(row.request, row.label): row.count for row in group_rows(model.await_sites())}
    route = ("GET", "/items/<int:item_id>")
    assert rows[(route, "GET /items/<int:item_id> (RequestResponseCycle.run_asgi)")] == 2
    assert (
        rows[(route, "GET /items/<int:item_id> (ASGIHandler.handle.<locals>.process_request)")] == 2
    )
    assert sum(count for (request, _label), count in rows.items() if request is None) == 1


def test_countdowns_run_from_when_the_agent_observed_them() -> None:
    # GIVEN a sleep with 10 s left and a 5 s timeout, observed at taken_at = 2000
    model = TaskModel.from_snapshot(
        snapshot(
            task(
                "1",
                "s",
                awaiting=awaiting("sleep", seconds_left=10.0, deadline_in=5.0),
            )
        )
    )
    sleeper = model.tasks["1"]
    # WHEN we look 2.5 s later, and again after both expired
    assert task_doing(sleeper, now=2002.5) == "sleep, 7.5 s left, timeout in 2.5 s"
    assert task_doing(sleeper, now=2100.0) == "sleep, 0.0 s left, timeout in 0.0 s"


def test_durations_have_a_constant_shape() -> None:
    assert [format_duration(s) for s in (0.25, 3.14, 724, 10920)] == [
        "250ms",
        "3.1s",
        "12m04s",
        "3h02m",
    ]
