"""A look that fails (a bug of the agent's, or a race with the loops' threads it did not
foresee) never ends a subscription unexplained: it is made once more, and a subscriber whose
looks keep failing is told so in one line before the agent hangs up. Against a real agent
server and client, in this process."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskscope.agent import server as server_module
from taskscope.agent.server import AgentServer
from taskscope.agent.tracker import Tracker
from taskscope.client import AgentClient, ClientError
from tests.helpers import wait_for


def _read_all(updates: Iterator[Any]) -> None:
    for _update in updates:
        pass


def test_a_failed_look_is_made_again_and_looks_that_keep_failing_are_said(
    monkeypatch: pytest.MonkeyPatch, socket_dir: str
) -> None:
    failures_left = [1]  # how many of the next looks fail
    real_build = server_module.SnapshotBuilder.build_raw

    def failing_build(self: Any, include_finished: bool = True) -> Any:
        if failures_left[0]:
            failures_left[0] -= 1
            raise TypeError("'NoneType' object is not callable")
        return real_build(self, include_finished)

    monkeypatch.setattr(server_module.SnapshotBuilder, "build_raw", failing_build)
    server = AgentServer(Tracker(), socket_dir)
    server.start()
    try:
        with AgentClient(os.getpid(), socket_dir=socket_dir, timeout=5) as client:
            updates = client.subscribe(0.1)
            # GIVEN a subscription whose first look failed once: made again, it arrives
            assert next(updates)[0] == "snapshot"
            assert failures_left == [0]
            # WHEN a later look fails once THEN the next delta still comes
            failures_left[0] = 1
            assert next(updates)[0] == "delta"
            assert failures_left == [0]
            # WHEN every look fails THEN the subscriber is told why the agent hangs up
            failures_left[0] = 1 << 30
            with pytest.raises(ClientError) as raised:
                _read_all(updates)
            assert "the agent failed to look at the tasks (TypeError); please report it" in (
                str(raised.value)
            )
        # AND the agent still serves a new client once looks succeed again
        failures_left[0] = 0
        with AgentClient(os.getpid(), socket_dir=socket_dir, timeout=5) as client:
            assert client.snapshot()["pid"] == os.getpid()
    finally:
        server.stop()


def test_the_flight_recorder_skips_a_failed_look_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, socket_dir: str
) -> None:
    failing = [True]
    fed: list[float] = []
    real_build = server_module.SnapshotBuilder.build_raw

    def failing_build(self: Any, include_finished: bool = True) -> Any:
        if failing[0]:
            raise TypeError("'NoneType' object is not callable")
        return real_build(self, include_finished)

    monkeypatch.setattr(server_module.SnapshotBuilder, "build_raw", failing_build)
    server = AgentServer(Tracker(), socket_dir)
    server.start_flight_recorder(60)
    recorder = server.flight
    assert recorder is not None
    real_feed = recorder.feed
    monkeypatch.setattr(recorder, "feed", lambda snapshot: (fed.append(1), real_feed(snapshot)))
    server.start()
    try:
        # GIVEN looks that fail for longer than the recorder's interval
        time.sleep(2.5 * recorder.interval)
        assert fed == []
        # WHEN looks succeed again THEN the same recorder is fed
        failing[0] = False
        wait_for(lambda: len(fed) >= 2, what="the recorder's looks after the failed ones")
        assert server.flight is recorder
    finally:
        server.stop()
