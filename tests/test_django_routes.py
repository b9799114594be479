"""The request and route of a Django app's requests, against a real program serving it under
uvicorn (tests/targets/django_routes.py) and running it in a task of its own, as a server the
agent does not know would: the records say Django's matched route (a `path()` by its
converters, a `re_path()` by its expression), the grouped view groups by it, the filter finds
it, `dump` never says the query string. Django 6 handles a request in the server's task,
Django 5 in a task of its own under it: both are checked by what they must say alike."""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskscope.model import TaskModel
from taskscope.ui.task_display import matches
from taskscope.words import group_rows
from tests.helpers import agent_snapshot, run_cli

pytest.importorskip("django", reason="this test needs Django (pip install django)")
pytest.importorskip("uvicorn", reason="this test needs uvicorn (pip install uvicorn)")

ITEMS = "/items/<int:item_id>"
PAY = "^orders/(?P<number>[0-9]+)/pay$"


def _routed(snap: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted(
        (task["request"]["method"], task["request"]["path"], task["request"]["route"])
        for task in snap["tasks"]
        if "route" in task.get("request", {})
    )


def test_django_requests_say_their_route_and_group_by_it(start: Any) -> None:
    # GIVEN a Django app under uvicorn with two requests waiting in /items/<int:item_id>, one
    # in a re_path() view waiting on a lock, and the app run in a task of its own for /items/9
    target = start("django_routes.py").wait_ready()
    snap = agent_snapshot(target.pid)
    # THEN the task running each view says its request and the route Django matched, the one
    # run with no server the agent knows (/items/9) too
    assert _routed(snap) == [
        ("GET", "/items/1", ITEMS),
        ("GET", "/items/2", ITEMS),
        ("GET", "/items/9", ITEMS),
        ("GET", "/orders/4/pay", PAY),
    ], _routed(snap)
    # AND the grouped view groups the requests by route, whatever the item (under Django 5
    # the server's task of a request is grouped by the route of the task Django handles it
    # in: both serve one request)
    model = TaskModel.from_snapshot(snap)
    by_route: dict[tuple[str, str], set[str]] = {}
    for row in group_rows(model.await_sites()):
        if row.request is not None:
            paths = by_route.setdefault(row.request, set())
            paths.update(model.tasks[task_id].request[1] for task_id in row.ids)  # type: ignore[index]
    assert by_route == {
        ("GET", ITEMS): {"/items/1", "/items/2", "/items/9"},
        ("GET", PAY): {"/orders/4/pay"},
    }, by_route
    # AND the filter finds them by the route's converter
    found = sorted(
        task.request[1]
        for task in model.tasks.values()
        if task.request is not None and matches(task, "<int:item_id>")
    )
    assert found == ["/items/1", "/items/2", "/items/9"]
    # AND `dump` says the same, never the query string's secret
    dumped = run_cli("dump", str(target.pid))
    assert dumped.returncode == 0, dumped.stderr
    assert "secret" not in dumped.stdout
    assert _routed(json.loads(dumped.stdout)) == _routed(snap)
    code, _out, err = target.stop()
    assert code == 0, err


def test_a_django_request_is_read_without_running_the_programs_code() -> None:
    from taskscope.agent.web_requests import _read

    ran: list[str] = []

    class Match:
        def __init__(self, route: object) -> None:
            self.route = route

    class Request:
        def __init__(self, route: object) -> None:
            self.method, self.path = "POST", "/orders/4/pay"
            self.resolver_match = Match(route) if route is not None else None

    class PropertyRequest:
        @property
        def method(self) -> str:
            ran.append("property")
            return "GET"

        path = "/from/a/class"

    class LookupMatch:
        def __getattr__(self, name: str) -> str:
            ran.append("getattr")
            return "items/<int:pk>"

    # A path() route is said from the root, a re_path() one as written; none before resolving
    assert _read("django", Request("orders/<int:number>/pay")) == {
        "method": "POST",
        "path": "/orders/4/pay",
        "route": "/orders/<int:number>/pay",
    }
    assert _read("django", Request("")) == {
        "method": "POST",
        "path": "/orders/4/pay",
        "route": "/",
    }
    assert _read("django", Request(PAY))["route"] == PAY  # type: ignore[index]
    assert _read("django", Request(None)) == {"method": "POST", "path": "/orders/4/pay"}
    # A request whose facts sit behind a property or a __getattr__ is not read through them
    assert _read("django", PropertyRequest()) is None
    looked_up = Request(None)
    looked_up.resolver_match = LookupMatch()  # type: ignore[assignment]
    assert _read("django", looked_up) == {"method": "POST", "path": "/orders/4/pay"}
    assert _read("django", object()) is None
    assert ran == []
