"""taskscope on an aiohttp program: a request in each of aiohttp's own waits reads as a read
from its peer, not as the bare future aiohttp awaits inside (`Future self._waiter`); a client
request waiting for a connection says the connector's limit it is held by."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import agent_snapshot, by_name

pytest.importorskip("aiohttp", reason="these tests need aiohttp (pip install aiohttp)")


def test_aiohttp_reads_are_said_with_their_peer(start: Any) -> None:
    # GIVEN an aiohttp client waiting for a response, and a handler waiting for a body
    target = start("aiohttp_waits.py").wait_ready()
    port = target.file(f"port-{target.pid}").read_text()
    tasks = by_name(agent_snapshot(target.pid))
    # THEN each says what it reads, and from whom
    client = tasks["client"]["awaiting"]
    assert client["kind"] == "stream_read", client
    assert client["text"] == f"ClientResponse.start from 127.0.0.1:{port}", client
    uploader = tasks["uploader"]["awaiting"]
    assert uploader["kind"] == "stream_read", uploader
    assert uploader["text"].startswith("StreamReader.read"), uploader
    assert uploader["text"].endswith(" from 127.0.0.1:" + uploader["peer"].split(":")[1])
    assert uploader["peer"] != f"127.0.0.1:{port}"  # the uploading client's own port
    # AND a request waiting for a connection says the connector's limit it reached
    assert tasks["pool-first"]["awaiting"]["kind"] == "stream_read"
    second = tasks["pool-second"]["awaiting"]
    assert second["kind"] == "pool", second
    assert second["text"] == (
        f"a connection from TCPConnector to 127.0.0.1:{port} (all 1 to this host in use, 1 waiting)"
    ), second
    facts = second["object"]
    assert (facts["limit_per_host"], facts["host_in_use"], facts["waiters"]) == (1, 1, 1)
    assert facts["limit"] == 100 and facts["in_use"] == 1  # aiohttp's default limit
    code, _out, err = target.stop()
    assert code == 0, err
