"""taskscope on a program that already runs aiomonitor with its task factory hooked: both tools
work on it at once. taskscope names each task by the coroutine it was made to run (not by
aiomonitor's wrapper around it), pending and finished alike, still sees who created each task
through aiomonitor's factory, and cancels one task; aiomonitor's own web API keeps answering."""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any

import pytest

from tests.helpers import Target, agent_snapshot, by_name, notes, run_cli, wait_for

pytest.importorskip("aiomonitor", reason="these tests need aiomonitor (pip install aiomonitor)")


def free_ports(count: int) -> list[str]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [str(sock.getsockname()[1]) for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def aiomonitor_live_tasks(target: Target) -> dict[str, str]:
    """aiomonitor's own list of live tasks (its web UI's API): name -> coroutine."""
    port = target.file(f"ports-{target.pid}").read_text()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/live-tasks",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        listed = json.load(response)["tasks"]
    return {task["name"]: task["coro"] for task in listed}


def test_a_program_running_aiomonitor_with_its_task_factory(start: Any) -> None:
    # GIVEN a program that runs aiomonitor (task factory hooked), started with `taskscope run`
    target = start("aiomonitor_app.py", *free_ports(3)).wait_ready()
    tasks = by_name(agent_snapshot(target.pid))
    # THEN each task is named by its own coroutine, and who created it is known
    assert tasks["spawner"]["coro"] == "spawner", tasks["spawner"]
    assert tasks["child-of-spawner"]["coro"] == "child", tasks["child-of-spawner"]
    assert tasks["child-of-spawner"]["parent"] == tasks["spawner"]["id"]
    # (the stack still shows aiomonitor's wrapper: it is on the stack)
    functions = [frame["function"] for frame in tasks["victim"]["stack"]]
    assert functions[:2] == ["Monitor._coro_wrapper", "victim"], functions
    # WHEN taskscope cancels the victim by name
    result = run_cli("cancel", str(target.pid), "victim")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "victim cancelled" in notes(target), what="the victim's cancellation")
    # THEN the history names the finished task by its coroutine too
    [finished] = [task for task in agent_snapshot(target.pid)["tasks"] if task["name"] == "victim"]
    assert (finished["state"], finished["coro"]) == ("cancelled", "victim"), finished
    # AND aiomonitor itself goes on working beside the agent
    listed = aiomonitor_live_tasks(target)
    assert listed.get("spawner") == "spawner()" and "victim" not in listed, listed
    code, _out, err = target.stop()
    assert code == 0, err
