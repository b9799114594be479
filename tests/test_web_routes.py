"""The route a request task's request matched, against a real program serving a Starlette app
under uvicorn and under hypercorn, and an aiohttp.web app (tests/targets/web_routes.py), three
requests to an `/items/{...}` route on each: the record says the route's template, the grouped
view groups the requests by it, the detail pane and the filter use it; a request that waited
before its application routed it gets its route once it has moved."""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskscope.model import TaskModel
from taskscope.ui.task_display import matches
from taskscope.words import group_rows, served_words
from tests.helpers import agent_snapshot, notes, run_cli, wait_for

pytest.importorskip("uvicorn", reason="this test needs uvicorn (pip install uvicorn)")
pytest.importorskip("aiohttp", reason="this test needs aiohttp (pip install aiohttp)")
pytest.importorskip("starlette", reason="this test needs starlette (pip install starlette)")
pytest.importorskip("hypercorn", reason="this test needs hypercorn (pip install hypercorn)")

UVICORN = "RequestResponseCycle.run_asgi"
AIOHTTP = "RequestHandler._handle_request"
HYPERCORN = "_handle"


def _served(snap: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    return sorted(
        (
            task["coro"],
            task["request"]["method"],
            task["request"]["path"],
            task["request"].get("route"),
        )
        for task in snap["tasks"]
        if "request" in task
    )


def test_request_tasks_say_their_route_and_group_by_it(start: Any) -> None:
    # GIVEN Starlette and aiohttp.web, three requests to /items/{...} waiting on each, and a
    # request to /late/7 held by a middleware before Starlette routed it
    target = start("web_routes.py").wait_ready()
    snap = agent_snapshot(target.pid)
    # THEN each request task's record says the route its application matched, by template
    assert _served(snap) == [
        (AIOHTTP, "GET", "/items/1", "/items/{id}"),
        (AIOHTTP, "GET", "/items/2", "/items/{id}"),
        (AIOHTTP, "GET", "/items/3", "/items/{id}"),
        (UVICORN, "GET", "/items/1", "/items/{item_id}"),
        (UVICORN, "GET", "/items/2", "/items/{item_id}"),
        (UVICORN, "GET", "/items/3", "/items/{item_id}"),
        (UVICORN, "GET", "/late/7", None),  # not routed yet
        (HYPERCORN, "GET", "/items/1", "/items/{item_id}"),
        (HYPERCORN, "GET", "/items/2", "/items/{item_id}"),
        (HYPERCORN, "GET", "/items/3", "/items/{item_id}"),
    ], _served(snap)
    # AND the grouped view has one line per route, whatever the item
    model = TaskModel.from_snapshot(snap)
    routed = {
        row.label: row.count for row in group_rows(model.await_sites()) if row.request is not None
    }
    assert routed == {
        f"GET /items/{{id}} ({AIOHTTP})": 3,
        f"GET /items/{{item_id}} ({UVICORN})": 3,
        f"GET /items/{{item_id}} ({HYPERCORN})": 3,
    }, routed
    # AND the filter finds the tasks by their route, and the detail pane says it
    found = sorted(task.request[1] for task in model.tasks.values() if matches(task, "{item_id}"))
    assert found == ["/items/1", "/items/1", "/items/2", "/items/2", "/items/3", "/items/3"]
    first = next(task for task in model.tasks.values() if task.route == "/items/{item_id}")
    assert first.request is not None
    assert served_words(first.request, first.route) == (
        f"GET {first.request[1]}, route /items/{{item_id}}"
    )
    # AND `dump` says the same, and never the query string's secret
    dumped = run_cli("dump", str(target.pid))
    assert dumped.returncode == 0, dumped.stderr
    assert "secret" not in dumped.stdout
    assert _served(json.loads(dumped.stdout)) == _served(snap)

    # WHEN the middleware lets the late request through to its route
    target.file(f"route-{target.pid}").write_text("go")
    wait_for(lambda: "late routed" in notes(target), what="the late request routed")

    # THEN the next look says its route (read again once the task moved)
    def late_route() -> Any:
        for task in agent_snapshot(target.pid)["tasks"]:
            request = task.get("request") or {}
            if request.get("path") == "/late/7" and "route" in request:
                return request["route"]
        return None

    assert wait_for(late_route, what="the late request's route") == "/late/{number}"
    code, _out, err = target.stop()
    assert code == 0, err


def test_served_words() -> None:
    assert served_words(("GET", "/items/7"), "/items/{id}") == "GET /items/7, route /items/{id}"
    assert served_words(("GET", "/report"), "/report") == "GET /report"
    assert served_words(("POST", "/upload"), None) == "POST /upload"


def test_a_route_is_read_without_running_the_programs_code() -> None:
    from taskscope.agent.web_requests import _read

    ran: list[str] = []

    class PropertyRoute:
        @property
        def path(self) -> str:
            ran.append("property")
            return "/from/a/property"

    class LookupRoute:
        def __getattr__(self, name: str) -> str:
            ran.append("getattr")
            return "/from/getattr"

    class PlainRoute:
        def __init__(self) -> None:
            self.path = "/items/{item_id}"

    def scope(route: object) -> dict[str, object]:
        return {"type": "http", "method": "GET", "path": "/items/7", "route": route}

    # A route whose path is a plain attribute is said; one behind a property or __getattr__
    # is not, and the program's code never runs
    assert _read("scope", scope(PlainRoute())) == {
        "method": "GET",
        "path": "/items/7",
        "route": "/items/{item_id}",
    }
    for route in (PropertyRoute(), LookupRoute(), object(), 42):
        assert _read("scope", scope(route)) == {"method": "GET", "path": "/items/7"}
    assert ran == []
    # A server object that is not as expected leaves the task without a request
    assert _read("uvicorn", LookupRoute()) is None
    assert _read("aiohttp", object()) is None
    assert ran == []
