"""The agent says which task each loop's `run_until_complete` drives (the main task of
`asyncio.run`): the one whose end stops the loop, and the program with it."""

from __future__ import annotations

from typing import Any

from taskscope.client import AgentClient
from taskscope.model import TaskModel


def test_each_loop_names_the_task_asyncio_run_drives(start: Any) -> None:
    # GIVEN a service run by asyncio.run, its main() holding a TaskGroup of workers
    target = start("service.py").wait_ready()
    # WHEN a client looks
    with AgentClient(target.pid) as client:
        model = TaskModel.from_snapshot(client.snapshot())
    # THEN the loop names its main task: the one running main(), and no other
    [loop] = model.loops.values()
    assert loop.main_task is not None
    assert model.tasks[loop.main_task].coro == "main"
    assert [task.coro for task in model.pending() if task.id == loop.main_task] == ["main"]


def test_threads_loops_name_their_own_main_tasks(start: Any) -> None:
    # GIVEN a program with a loop in the main thread and loops in other threads
    target = start("threads.py").wait_ready()
    with AgentClient(target.pid) as client:
        model = TaskModel.from_snapshot(client.snapshot())
    # THEN every running loop names a task of its own as the one it drives
    running = [loop for loop in model.loops.values() if loop.running]
    assert len(running) >= 2
    for loop in running:
        assert loop.main_task is not None, loop
        assert model.tasks[loop.main_task].loop == loop.id
