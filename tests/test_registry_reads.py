"""On 3.14+ the task registry lives in C: `asyncio.all_tasks` reads it in one call that holds
the GIL for 10-25 ms at 100,000 tasks, pausing the host's loop. The agent reads it whole at its
first look and then once a minute, and between takes the tasks it has noted (those it looked
at, and those made through its `create_task` shadow since). These tests count the whole reads
in a real process and check that nothing is missed between them."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from taskscope.client import AgentClient
from tests.helpers import Target, notes, wait_for

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 14), reason="3.11-3.13 keep the registry in a Python WeakSet"
)


def names(target: Target, client: AgentClient) -> set[str]:
    time.sleep(0.15)  # past the agent's reuse of a snapshot just built
    return {task["name"] for task in client.snapshot(include_finished=False)["tasks"]}


def test_looks_between_whole_reads_take_the_noted_tasks_and_miss_none(start: Any) -> None:
    # GIVEN a program run with the agent, whose registry reads are counted
    target = start("registry_reads.py").wait_ready()
    with AgentClient(target.pid) as client:
        # WHEN it is looked at several times
        first = names(target, client)
        assert {"first-sleeper", "Task-1"} <= first and "short-lived" not in first
        reads = notes(target).count("whole read")
        assert reads >= 1
        for _ in range(3):
            assert names(target, client) == first
        # THEN the registry was read whole only once
        assert notes(target).count("whole read") == reads
        # AND tasks made since are in the next look, still without a whole read
        target.file(f"spawn-{target.pid}").write_text("go")
        wait_for(lambda: "spawned" in notes(target), what="the spawned tasks")
        assert names(target, client) == first | {"spawned-1", "spawned-2"}
        assert notes(target).count("whole read") == reads
        # AND a task made by calling asyncio.Task() (not seen made) is known once it makes a
        # task through create_task, still without a whole read
        target.file(f"direct-{target.pid}").write_text("go")
        wait_for(lambda: "direct made" in notes(target), what="the direct task")
        known = wait_for(
            lambda: (
                {"direct-parent", "child-of-direct"} <= (shown := names(target, client)) and shown
            ),
            what="the direct task and its child",
        )
        assert known == first | {"spawned-1", "spawned-2", "direct-parent", "child-of-direct"}
        assert notes(target).count("whole read") == reads
        # AND a loop started since, whose tasks the agent has not noted yet, has its tasks
        # read whole at the next look, and noted from then on
        target.file(f"loop-{target.pid}").write_text("go")
        wait_for(lambda: "loop started" in notes(target), what="the second loop")
        seen = wait_for(
            lambda: "side-sleeper" in (shown := names(target, client)) and shown,
            what="the second loop's task",
        )
        assert {"side-sleeper", "spawned-1"} <= seen
        assert notes(target).count("whole read") > reads
        names(target, client)  # the loop adopted: at most one more whole read, then none
        settled = notes(target).count("whole read")
        for _ in range(3):
            assert "side-sleeper" in names(target, client)
        assert notes(target).count("whole read") == settled
