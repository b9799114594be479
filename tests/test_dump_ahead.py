"""`taskscope dump PID` sends its requests before the command line's imports
(taskscope/early.py), so that the agent looks while the client imports: on real processes,
the requests go out first, the dump is the one the ordinary path makes, and anything but the
plain `dump PID` of a process with an agent and no children is left to the ordinary path."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout
from typing import Any

from taskscope import early
from taskscope.cli import main
from tests.helpers import REPO, run_cli

#: Runs `python -m taskscope dump PID` as the command does, noting which taskscope modules
#: were imported when the first request went out.
_WATCHED_MAIN = """
import json, runpy, socket, sys
seen = []
send = socket.socket.sendall
def sendall(self, data, *args):
    if not seen:
        seen.append(sorted(name for name in sys.modules if name.startswith("taskscope")))
    return send(self, data, *args)
socket.socket.sendall = sendall
sys.argv = ["taskscope", "dump", sys.argv[1]]
try:
    runpy.run_module("taskscope", run_name="__main__", alter_sys=True)
finally:
    print(json.dumps(seen[0] if seen else None), file=sys.stderr)
"""


def _run_watched(pid: int) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", _WATCHED_MAIN, str(pid)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    imported = json.loads(result.stderr.strip().splitlines()[-1])
    return result, imported


def test_dump_asks_before_the_command_line_is_imported(start: Any) -> None:
    # GIVEN a process with an agent WHEN `python -m taskscope dump PID` runs
    target = start("dump_mix.py").wait_ready()
    result, imported = _run_watched(target.pid)
    # THEN its first request went out before the CLI, the client and the words were imported
    assert result.returncode == 0, result.stderr
    assert "taskscope.early" in imported
    assert not {"taskscope.cli", "taskscope.client", "taskscope.words"} & set(imported)
    # AND the dump is the whole snapshot, as the ordinary path writes it
    ordinary = run_cli("dump", "--indent", "2", str(target.pid))
    new, old = json.loads(result.stdout), json.loads(ordinary.stdout)
    assert list(new) == list(old)
    assert [task["id"] for task in new["tasks"]] == [task["id"] for task in old["tasks"]]
    assert new["warnings"] == old["warnings"]


def test_the_requests_sent_ahead_are_what_dump_reads(start: Any) -> None:
    # GIVEN requests sent ahead to a real agent
    target = start("dump_mix.py").wait_ready()
    ahead = early.send_ahead(["dump", str(target.pid)])
    assert ahead is not None and ahead.sock is not None
    sock = ahead.sock
    # WHEN the command line runs THEN it reads their replies on that connection (taken once)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["dump", str(target.pid)]) == 0
    assert ahead.sock is None and sock.fileno() == -1  # taken, and closed after the dump
    assert early.take(target.pid) is None
    dumped = json.loads(out.getvalue())
    assert dumped["pid"] == target.pid
    assert {task["name"] for task in dumped["tasks"]} >= {"sleeper-0", "fails", "waits-for"}


def test_anything_but_a_plain_dump_of_an_agent_is_left_alone(start: Any, monkeypatch: Any) -> None:
    target = start("dump_mix.py").wait_ready()
    bare = start("no_asyncio.py", agent=False).wait_ready()
    pid = str(target.pid)
    # Other commands, options, a pid that is not one, a process without an agent
    for arguments in (
        ["ps", pid],
        ["dump", "--indent", "2", pid],
        ["dump", pid, "--all"],
        ["dump", "x1"],
        ["dump", "0"],
        ["dump", str(bare.pid)],
    ):
        assert early.send_ahead(arguments) is None, arguments
    # The plain encoding asked for
    monkeypatch.setenv(early.ENCODING_ENV, "plain")
    assert early.send_ahead(["dump", pid]) is None
    monkeypatch.delenv(early.ENCODING_ENV)
    # A parent (its workers are each asked by the fleet): here, the test's own process
    assert early.send_ahead(["dump", str(os.getpid())]) is None
    assert early.take(target.pid) is None


def test_a_dump_without_an_agent_still_says_so(start: Any) -> None:
    # GIVEN a process without an agent and nothing sent ahead WHEN dump runs with --no-inject
    bare = start("no_asyncio.py", agent=False).wait_ready()
    result = run_cli("dump", "--no-inject", str(bare.pid))
    # THEN it says so first, in lines of its own, as before (3.14+ then tries a read-only
    # look, and says how that went), never a traceback
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert "no taskscope agent" in lines[0]
    assert all(line.startswith("taskscope: ") for line in lines)
