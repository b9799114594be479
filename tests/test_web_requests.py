"""The web request a task serves, against a real program running uvicorn and aiohttp.web
side by side (tests/targets/web_requests.py), each with a request waiting in its handler:
the record says the method and the path (never the query string), and `tree`, `ps`, `dump`
and the dashboard's filter use it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskscope.model import TaskInfo, TaskModel
from taskscope.ui.task_display import coro_text, matches
from taskscope.words import coro_label
from tests.helpers import agent_snapshot, notes, run_cli, wait_for
from tests.test_model import snapshot, task

pytest.importorskip("uvicorn", reason="this test needs uvicorn (pip install uvicorn)")
pytest.importorskip("aiohttp", reason="this test needs aiohttp (pip install aiohttp)")


def _requests(snap: dict[str, Any]) -> dict[str, Any]:
    return {
        task["coro"] + " " + str(task["id"]): task["request"]
        for task in snap["tasks"]
        if "request" in task
    }


def test_request_tasks_say_the_request_they_serve(start: Any) -> None:
    # GIVEN uvicorn and aiohttp.web, each with requests waiting in their handlers
    target = start("web_requests.py").wait_ready()
    snap = agent_snapshot(target.pid)
    served = sorted(
        (task["coro"], task["request"]["method"], task["request"]["path"])
        for task in snap["tasks"]
        if "request" in task
    )
    # THEN each request task's record says its method and path, without the query string
    assert served == [
        ("RequestHandler._handle_request", "GET", "/slow"),
        ("RequestHandler._handle_request", "POST", "/upload"),
        ("RequestResponseCycle.run_asgi", "GET", "/slow"),
    ], served
    # AND no other task has one
    assert len(_requests(snap)) == 3
    # AND `dump` (the compact wire, written as JSON) says the same, and never the secret
    dumped = run_cli("dump", str(target.pid))
    assert dumped.returncode == 0, dumped.stderr
    assert "secret" not in dumped.stdout
    assert sorted(_requests(json.loads(dumped.stdout)).values(), key=str) == sorted(
        _requests(snap).values(), key=str
    )
    # AND `tree` and `ps` show the request where the coroutine goes
    tree = run_cli("tree", str(target.pid))
    assert tree.returncode == 0, tree.stderr
    assert "GET /slow (RequestResponseCycle" in tree.stdout, tree.stdout
    assert "POST /upload (RequestHandler" in tree.stdout, tree.stdout
    listed = run_cli("ps", str(target.pid))
    assert "GET /slow (RequestHandler._handle_re" in listed.stdout, listed.stdout
    code, _out, err = target.stop()
    assert code == 0, err


def test_the_request_is_what_a_filter_finds_and_the_coroutine_column_shows() -> None:
    served = task(
        "7",
        "Task-7",
        coro="RequestResponseCycle.run_asgi",
        request={"method": "GET", "path": "/report"},
    )
    malformed = task("8", "Task-8", request={"method": 1, "path": None})
    model = TaskModel.from_snapshot(snapshot(served, malformed))
    info: TaskInfo = model.tasks["7"]
    assert info.request == ("GET", "/report")
    assert model.tasks["8"].request is None
    assert matches(info, "/report") and matches(info, "get /rep")
    assert not matches(model.tasks["8"], "/report")
    assert coro_text(info, 60) == "GET /report (RequestResponseCycle.run_asgi)"
    assert coro_label("worker", None) == "worker()"


@pytest.mark.parametrize("timed", [False, True], ids=["watched", "timed"])
def test_a_step_that_blocks_the_loop_says_the_request_it_served(start: Any, timed: bool) -> None:
    # GIVEN the servers, their steps watched (the default) or timed (`--time-steps`)
    env = {"TASKSCOPE_TIME_STEPS": "1" if timed else "0"}
    target = start("web_requests.py", env=env).wait_ready()
    # WHEN a request to each holds the loop 0.3 s in its handler, and ends
    target.file(f"block-{target.pid}").write_text("go")
    wait_for(
        lambda: "uvicorn blocked" in notes(target) and "aiohttp blocked" in notes(target),
        what="both blocking requests",
    )
    # THEN the loop's stalls say the request each blocking step served
    stalls = wait_for(
        lambda: [
            stall
            for stall in agent_snapshot(target.pid)["loops"][0].get("stalls") or ()
            if stall["duration"] >= 0.25
        ],
        what="the stalls",
    )
    requests = [stall.get("request") or {} for stall in stalls]
    assert [(request.get("method"), request.get("path")) for request in requests] == [
        ("GET", "/block")
    ] * 2
    # (aiohttp's route is its path here; the plain ASGI app routes nothing)
    assert sorted(str(request.get("route")) for request in requests) == ["/block", "None"]
    # AND the warning says which requests, never their query string
    lint = run_cli("lint", str(target.pid))
    lines = [line for line in lint.stdout.splitlines() if line.startswith("blocking step: ")]
    assert len(lines) == 2, lint.stdout  # one per server: their request tasks run other code
    assert all(" serving GET /block held " in line for line in lines), lines
    assert "secret" not in lint.stdout
    code, _out, err = target.stop()
    assert code == 0, err


def test_a_finished_request_task_keeps_its_request_in_the_history(start: Any) -> None:
    # GIVEN the servers, their request tasks seen pending by a look
    target = start("web_requests.py").wait_ready()
    snap = agent_snapshot(target.pid)
    upload = next(
        task for task in snap["tasks"] if (task.get("request") or {}).get("path") == "/upload"
    )
    # WHEN the upload's task is cancelled, and its handler ends
    cancelled = run_cli("cancel", str(target.pid), f"id:{upload['id']}")
    assert cancelled.returncode == 0, cancelled.stderr
    # (saying which request it cancelled)
    assert "(POST /upload (RequestHandler._handle_request))" in cancelled.stdout, cancelled.stdout
    wait_for(lambda: "upload cancelled" in notes(target), what="the handler's end")

    # THEN the history's entry of that task says the request it served
    def finished() -> Any:
        for record in agent_snapshot(target.pid)["tasks"]:
            if record["id"] == upload["id"] and record["state"] != "pending":
                return record
        return None

    entry = wait_for(finished, what="the finished request task")
    assert entry["request"] == {"method": "POST", "path": "/upload", "route": "/upload"}, entry
    # AND `ps -a` names it by its request
    listed = run_cli("ps", "-a", str(target.pid))
    assert "POST /upload (RequestHandler" in listed.stdout, listed.stdout
    code, _out, err = target.stop()
    assert code == 0, err
