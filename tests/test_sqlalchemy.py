"""taskscope on a SQLAlchemy asyncio program: a checkout waiting for a pooled connection says
the pool and its limit (its wait is inside the greenlet SQLAlchemy runs its synchronous code
in, not in the task's coroutines, whose innermost await is an anonymous `Queue.get`); a query
the driver runs says so, through the greenlet."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import agent_snapshot, by_name

pytest.importorskip("sqlalchemy", reason="these tests need SQLAlchemy (pip install sqlalchemy)")
pytest.importorskip("greenlet", reason="these tests need greenlet (pip install greenlet)")
pytest.importorskip("aiosqlite", reason="these tests need aiosqlite (pip install aiosqlite)")


def test_a_checkout_waiting_for_the_pool_says_its_limit(start: Any) -> None:
    # GIVEN a pool of one connection, held by a slow query, and another checkout
    target = start("sqlalchemy_pool.py").wait_ready()
    tasks = by_name(agent_snapshot(target.pid))
    # THEN the holder's query runs in aiosqlite's thread
    holder = tasks["holder"]["awaiting"]
    assert holder["kind"] == "executor", holder
    assert holder["text"].startswith("aiosqlite Cursor.execute in "), holder
    # AND the other waits for a connection of the pool, all of whose are in use
    checkout = tasks["checkout"]["awaiting"]
    assert checkout["kind"] == "pool", checkout
    assert checkout["text"].startswith(
        "a connection from AsyncAdaptedQueuePool (all 1 in use, 1 waiting)"
    ), checkout
    facts = checkout["object"]
    assert (facts["limit"], facts["in_use"], facts["waiters"]) == (1, 1, 1)
    code, _out, err = target.stop()
    assert code == 0, err
