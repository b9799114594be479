"""taskscope on an httpx client: a request waiting for its response reads as a read from its
peer (anyio's socket stream), not as the asyncio Event inside it; one queued for a connection
says the pool's limit it is held by (httpcore's `AsyncConnectionPool`)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import agent_snapshot, by_name

pytest.importorskip("httpx", reason="these tests need httpx (pip install httpx)")


def test_httpx_requests_say_their_peer_and_the_pool_limit(start: Any) -> None:
    # GIVEN an httpx client of one connection, a request on it and one queued for it
    target = start("httpx_waits.py").wait_ready()
    port = target.file(f"port-{target.pid}").read_text()
    tasks = by_name(agent_snapshot(target.pid))
    # THEN the one with the connection reads from the server
    first = tasks["first"]["awaiting"]
    assert first["kind"] == "stream_read", first
    assert first["text"] == f"SocketStream.receive from 127.0.0.1:{port}", first
    # AND the queued one waits for a connection of the pool, all of whose are in use
    second = tasks["second"]["awaiting"]
    assert second["kind"] == "pool", second
    assert second["text"] == (
        f"a connection from AsyncConnectionPool to 127.0.0.1:{port} (all 1 in use, 1 waiting)"
    ), second
    facts = second["object"]
    assert (facts["limit"], facts["in_use"], facts["waiters"]) == (1, 1, 1)
    code, _out, err = target.stop()
    assert code == 0, err
