"""The dashboard of a web server, in a real terminal: each request task shows the request it
serves where every one would show the same coroutine, the filter finds a request by its path,
and cancelling the match cancels that request's handler in the server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import TARGETS, Target, notes, spawn
from tests.ui.test_tmux_e2e import Terminal, detail_title
from tests.ui.test_tmux_runtime import attach_to, line_with, on_screen

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
pytest.importorskip("uvicorn", reason="this test needs uvicorn (pip install uvicorn)")
pytest.importorskip("aiohttp", reason="this test needs aiohttp (pip install aiohttp)")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Target]:
    started = spawn(str(TARGETS / "web_requests.py"), workdir=str(tmp_path)).wait_ready(30)
    try:
        yield started
    finally:
        started.kill()


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal("requests")
    yield term
    term.kill()


def test_filter_a_request_by_its_path_and_cancel_it(server: Target, terminal: Terminal) -> None:
    # GIVEN the dashboard on uvicorn and aiohttp, each with requests waiting in handlers
    attach_to(terminal, server.pid, "GET /slow")
    # THEN each request task shows its request before the coroutine
    assert line_with(terminal, "GET /slow (RequestRespo"), terminal.screen()
    assert line_with(terminal, "POST /upload (RequestHa"), terminal.screen()
    # WHEN the user filters by the path
    terminal.keys("/")
    on_screen(terminal, lambda: line_with(terminal, "filter by name"), 10, "the filter box")
    terminal.keys("/upload", "Enter")
    # THEN the cursor is on that request, and the detail says what it serves
    on_screen(terminal, lambda: line_with(terminal, "serves   POST /upload"), 10, "the detail")
    # (the request's own task: its handler's parent serves the same request, and the cursor
    # may pass it on its way to the first task the filter names)
    on_screen(
        terminal,
        lambda: line_with(terminal, "╮╭─ Task-") and line_with(terminal, "_handle_request()"),
        10,
        "the request's task in the detail",
    )
    # WHEN it cancels that task
    terminal.keys("c")
    # THEN the question says which request it cancels, and names the task the detail shows
    question = on_screen(
        terminal,
        lambda: line_with(terminal, "Cancel Task-", "(POST /upload (Req"),
        30,  # 10 s were not enough once on a loaded CI machine (3.11): it came just after
        "the question",
    )
    title = detail_title(terminal.screen())
    assert title.startswith("Task-") and f"Cancel {title} (" in str(question), terminal.screen()
    terminal.keys("y")
    # THEN the server's handler of that request is cancelled, and the server goes on
    on_screen(terminal, lambda: "upload cancelled" in notes(server), 15, "the handler's end")
    assert server.process.poll() is None
    terminal.keys("q")


@pytest.fixture
def routed_server(tmp_path: Path) -> Iterator[Target]:
    pytest.importorskip("starlette", reason="this test needs starlette (pip install starlette)")
    started = spawn(str(TARGETS / "web_routes.py"), workdir=str(tmp_path)).wait_ready(30)
    try:
        yield started
    finally:
        started.kill()


def test_the_grouped_view_groups_requests_by_route(
    routed_server: Target, terminal: Terminal
) -> None:
    # GIVEN the dashboard on a Starlette app and an aiohttp app, three requests to an
    # /items/{...} route waiting on each
    attach_to(terminal, routed_server.pid, "GET /items/")
    # WHEN the user opens the grouped view
    terminal.keys("g")
    # THEN each server's requests are one line by route, whatever item each asked for
    starlette = on_screen(
        terminal,
        lambda: line_with(terminal, "3 x GET /items/{item_id} (RequestRes"),
        10,
        "the Starlette route's group",
    )
    assert "web_routes.py:" in starlette, starlette  # where the endpoint waits, not uvicorn
    assert line_with(terminal, "3 x GET /items/{id} (RequestHandler"), terminal.screen()
    # WHEN it filters by the route and opens the group
    terminal.keys("/")
    on_screen(terminal, lambda: line_with(terminal, "filter by name"), 10, "the filter box")
    terminal.keys("{item_id}", "Enter")
    on_screen(
        terminal,
        lambda: (
            line_with(terminal, "filter: {item_id}")
            and line_with(terminal, "RequestHandler") is None
        ),
        10,
        "the groups filtered",
    )
    terminal.keys("Enter")
    # THEN the table lists that group's three requests, each with its own path
    on_screen(
        terminal,
        lambda: (
            all(line_with(terminal, f"GET /items/{n} (Request") for n in (1, 2, 3))
            and line_with(terminal, "RequestHandler") is None
        ),
        10,
        "the group's tasks",
    )
    terminal.keys("q")
