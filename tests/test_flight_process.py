"""The flight recorder in real processes: turned on by the environment, `taskscope run` or
install(); `taskscope record PID --last` saves the minute before it was asked; off by default
(and then the agent builds no snapshot while nobody looks); its window is respected."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from taskscope.agent import server as server_module
from taskscope.agent.server import AgentServer
from taskscope.agent.tracker import Tracker
from taskscope.client import AgentClient
from taskscope.protocol import FlightReply
from tests.helpers import REPO, run_cli, wait_for

OFF_LINE = (
    "the flight recorder is off in process {pid}: start it with TASKSCOPE_FLIGHT_RECORDER=60 or "
    "taskscope.install(flight_recorder=60)"
)


def _held(pid: int) -> FlightReply | None:
    with AgentClient(pid) as client:
        return client.flight()


def _states(body: dict[str, Any], key: str) -> dict[str, str]:
    return {
        str(task["name"]): str(task["state"])
        for task in body[key]
        if task.get("name") in ("worker", "doomed")
    }


def _pending_seen(pid: int) -> bool:
    held = _held(pid)
    if held is None:
        return False
    seen = _states(dict(held["base"]), "tasks")
    for delta in held["deltas"]:
        seen.update(_states(dict(delta), "changed"))
    return seen == {"worker": "pending", "doomed": "pending"}


def _ended_in_deltas(pid: int) -> bool:
    held = _held(pid)
    if held is None:
        return False
    ended: dict[str, str] = {}
    for delta in held["deltas"]:
        ended.update(_states(dict(delta), "changed"))
    return ended == {"worker": "done", "doomed": "failed"}


def _read_recording(path: Path) -> list[dict[str, Any]]:
    """What `open_recording` shows at each of the recording's times, read by another Python."""
    script = (
        "import json, sys\n"
        "from taskscope.recording import open_recording\n"
        "r = open_recording(sys.argv[1])\n"
        "out = []\n"
        "for at in r.times:\n"
        "    s = r.snapshot_at(at)\n"
        "    out.append({'at': at, 'tasks': {t['name']: t['state'] for t in s['tasks']}})\n"
        "print(json.dumps({'facts': r.facts, 'start': r.start, 'end': r.end, 'states': out}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        check=True,
    )
    return [json.loads(done.stdout)]


def test_record_last_saves_the_moments_before_it_was_asked(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = start("flight.py", env={"TASKSCOPE_FLIGHT_RECORDER": "60"}).wait_ready()
    # The recorder saw both tasks pending; then they end, and the recorder sees that too.
    wait_for(lambda: _pending_seen(target.pid), what="the tasks pending in the recorder")
    target.file(f"finish-{target.pid}").write_text("go")
    wait_for(lambda: target.file(f"finished-{target.pid}").exists(), what="the tasks to end")
    wait_for(lambda: _ended_in_deltas(target.pid), what="the ends in the recorder")

    output = tmp_path / "last.tsrec"
    done = run_cli("record", str(target.pid), "--last", "-o", str(output))
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskscope: saved the last "), lines
    assert f" s of process {target.pid} " in lines[0]

    (read,) = _read_recording(output)
    states = read["states"]
    assert read["facts"]["pid"] == target.pid
    assert read["facts"]["flight_window"] == 60
    # The earlier state (both pending), then the later one (one done, one failed).
    pairs = [(state["tasks"].get("worker"), state["tasks"].get("doomed")) for state in states]
    assert ("pending", "pending") in pairs
    assert pairs[-1] == ("done", "failed")
    assert pairs.index(("pending", "pending")) < pairs.index(("done", "failed"))
    assert target.process.poll() is None
    code, out, err = target.stop()
    assert (code, out, err) == (0, "", "")  # the recorder wrote nothing in the target


def test_off_by_default_record_last_says_so_in_one_line(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = start("flight.py").wait_ready()
    output = tmp_path / "last.tsrec"
    done = run_cli("record", str(target.pid), "--last", "-o", str(output))
    assert done.returncode == 1
    assert done.stderr == "taskscope: " + OFF_LINE.format(pid=target.pid) + "\n"
    assert not output.exists()


@pytest.mark.parametrize("value", ["sixty", "-5", "0", "nan", "inf", ""])
def test_a_bad_value_leaves_the_recorder_off_without_a_word(start, value: str) -> None:  # type: ignore[no-untyped-def]
    target = start("flight.py", env={"TASKSCOPE_FLIGHT_RECORDER": value}).wait_ready()
    assert _held(target.pid) is None
    assert target.stop() == (0, "", "")


def test_taskscope_run_turns_it_on(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "import asyncio, sys\n"
        "async def main():\n"
        "    print('ready', flush=True)\n"
        "    sys.stdin.readline()\n"
        "asyncio.run(main())\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "taskscope", "run", "--flight-recorder", "5", str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        held = wait_for(lambda: _held(process.pid), what="the flight recorder's first look")
        assert held["window"] == 5
    finally:
        process.communicate("\n", timeout=20)


def test_the_window_is_respected(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = 3.0
    target = start("flight.py", env={"TASKSCOPE_FLIGHT_RECORDER": "3"}).wait_ready()
    wait_for(lambda: _pending_seen(target.pid), what="the tasks pending in the recorder")
    target.file(f"finish-{target.pid}").write_text("go")
    wait_for(lambda: target.file(f"finished-{target.pid}").exists(), what="the tasks to end")
    ended_at = time.time()

    # Once the window has passed over the end, the pending state is gone: the base is later.
    def ended_in_base() -> bool:
        held = _held(target.pid)
        return held is not None and _states(dict(held["base"]), "tasks") == {
            "worker": "done",
            "doomed": "failed",
        }

    wait_for(ended_in_base, what="the window to pass over the tasks' end")
    assert time.time() - ended_at >= window - 1.5  # not before the window passed
    output = tmp_path / "last.tsrec"
    done = run_cli("record", str(target.pid), "--last", "-o", str(output))
    assert done.returncode == 0, done.stderr
    (read,) = _read_recording(output)
    # Nothing older than the window (plus one look's interval) is held.
    assert read["end"] - read["start"] <= window + 1.5
    assert all(state["tasks"].get("worker") == "done" for state in read["states"])


def test_nothing_is_built_while_nobody_looks_and_the_recorder_is_off(
    monkeypatch: pytest.MonkeyPatch, socket_dir: str
) -> None:
    builds: list[Tracker] = []
    real_build = server_module.SnapshotBuilder.build_raw

    def counting_build(self: Any, include_finished: bool = True) -> Any:
        builds.append(self.tracker)
        return real_build(self, include_finished)

    monkeypatch.setattr(server_module.SnapshotBuilder, "build_raw", counting_build)

    off = AgentServer(Tracker(), socket_dir)
    off.start()
    try:
        # Once its thread has run, it sleeps until its next prune: no look is due.
        wait_for(lambda: off._timeout() > 1.0, what="the idle server's first turn")
        on = AgentServer(Tracker(), socket_dir + "-on")
        on.start_flight_recorder(60)
        on.start()
        try:
            # The recorder's thread looks, at its interval, three times; all along the other
            # server (recorder off, nobody connected) built nothing.
            wait_for(
                lambda: builds.count(on.tracker) >= 3 and on.flight and on.flight.span() >= 1.0,
                what="the recorder's looks",
            )
        finally:
            on.stop()
        assert off.flight is None
        assert off._timeout() > 1.0
    finally:
        off.stop()
    assert off.tracker not in builds
