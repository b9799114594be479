"""taskscope on an aiosqlite program: a query its connection's thread runs says that thread and
where the program's own code is in it, one queued behind it says so; not the bare future the
task awaits (`Future future`)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import TARGETS, agent_snapshot, by_name

pytest.importorskip("aiosqlite", reason="these tests need aiosqlite (pip install aiosqlite)")


def _line_of(text: str, path: str) -> int:
    lines = (TARGETS / path).read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def test_aiosqlite_calls_say_their_thread_or_that_they_are_queued(start: Any) -> None:
    # GIVEN a query the connection's thread runs (in a slow function) and one queued behind it
    target = start("aiosqlite_waits.py").wait_ready()
    tasks = by_name(agent_snapshot(target.pid))
    query, queued = tasks["query"]["awaiting"], tasks["queued"]["awaiting"]
    # THEN the running one names the thread and the program's line it is at
    assert query["kind"] == "executor", query
    line = _line_of("release.wait(600)", "aiosqlite_waits.py")
    assert query["text"].startswith("aiosqlite Connection.execute in "), query
    assert query["text"].endswith(f", at slow_step() aiosqlite_waits.py:{line}"), query
    assert "SELECT" not in str(query)  # the SQL is not said
    # AND the other one waits behind it
    assert queued["text"] == "aiosqlite Connection.execute, queued", queued
    code, _out, err = target.stop()
    assert code == 0, err
