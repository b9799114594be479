"""The agent as a guest that cannot be locked out, lost, or turned against its host (issue 15):
each test runs a real target process and fails without the fix it names."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from taskscope.agent import server as agent_server
from taskscope.client import AgentClient, ClientError, live_agents
from taskscope.protocol import socket_path
from tests.helpers import REPO, TARGETS, run_cli, wait_for


class RawClient:
    """A socket to an agent that sends raw bytes and reads whole reply lines."""

    def __init__(self, pid: int, path: str | None = None, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        # A full listen queue refuses for a moment (EAGAIN): the agent empties it soon.
        wait_for(lambda: self._connect(path or socket_path(pid)), 10, "a place in the queue")
        self.buffer = b""

    def _connect(self, path: str) -> bool:
        try:
            self.sock.connect(path)
        except BlockingIOError:
            return False
        return True

    def send(self, payload: bytes) -> None:
        self.sock.sendall(payload)

    def read(self) -> dict[str, Any] | None:
        """The next reply, or None at EOF."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        self.sock.close()


HELLO = b'{"type": "hello", "id": 1, "protocol": 2}\n'


# --- 1. a request whose type is not a string ------------------------------------------------


@pytest.mark.parametrize("kind", [b"[]", b"{}", b"[1, [2]]", b'{"a": 1}'])
def test_a_type_that_is_an_array_or_object_gets_an_error_and_the_connection_stays(
    start: Any, kind: bytes
) -> None:
    target = start("service.py").wait_ready()
    client = RawClient(target.pid)
    # WHEN a greeted client sends a request whose type is a list or an object, then a snapshot
    client.send(HELLO + b'{"type": ' + kind + b', "id": 2}\n{"type": "snapshot", "id": 3}\n')
    # THEN it gets an error for the bad one and still its snapshot
    assert client.read()["type"] == "hello"  # type: ignore[index]
    error = client.read()
    assert error is not None and error["type"] == "error" and error["code"] == "bad_request"
    snapshot = client.read()
    assert snapshot is not None and snapshot["type"] == "snapshot" and snapshot["re"] == 3
    client.close()


# --- 9c. the protocol is UTF-8 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\xef\xbb\xbf" + HELLO,
        HELLO.decode().encode("utf-16"),
        HELLO.decode().encode("utf-16-le"),
        HELLO.decode().encode("utf-32"),
    ],
    ids=["utf8-bom", "utf16-bom", "utf16le", "utf32"],
)
def test_a_hello_not_in_utf8_is_refused(start: Any, payload: bytes) -> None:
    target = start("service.py").wait_ready()
    client = RawClient(target.pid)
    client.send(payload.rstrip(b"\x00") + b"\n" if not payload.endswith(b"\n") else payload)
    reply = client.read()
    assert reply is not None and reply["type"] == "error" and reply["code"] == "bad_request"
    assert client.read() is None  # and it hangs up: not a client of ours
    client.close()


# --- 2. nobody can lock the others out ---------------------------------------------------------


def test_silent_connections_cannot_lock_a_client_out(start: Any) -> None:
    target = start("service.py").wait_ready()
    # GIVEN three times more silent connections than the agent has slots
    silent = [RawClient(target.pid) for _ in range(3 * agent_server.MAX_UNGREETED)]
    try:
        # THEN a well-behaved client is still answered at once
        started = time.monotonic()
        with AgentClient(target.pid, timeout=5) as client:
            assert client.snapshot()["pid"] == target.pid
        assert time.monotonic() - started < 1.0
        # AND every silent connection is closed before long, with a reason when it can read one
        for connection in silent:
            reply = connection.read()
            assert reply is None or reply["code"] == "timeout"
            assert connection.read() is None
    finally:
        for connection in silent:
            connection.close()


def test_blank_lines_do_not_keep_a_connection_without_hello(start: Any) -> None:
    target = start("service.py").wait_ready()
    client = RawClient(target.pid, timeout=agent_server.HELLO_TIMEOUT + 5)
    started = time.monotonic()
    stop = threading.Event()

    def keep_sending_blank_lines() -> None:
        while not stop.is_set():
            try:
                client.send(b" \n")
            except OSError:
                return
            stop.wait(0.1)

    sender = threading.Thread(target=keep_sending_blank_lines)
    sender.start()
    try:
        reply = client.read()
    finally:
        stop.set()
        sender.join()
    assert reply is not None and reply["code"] == "timeout"
    assert time.monotonic() - started < agent_server.HELLO_TIMEOUT + 2
    client.close()


def test_greeted_idle_clients_give_up_their_slots_and_busy_names_them(start: Any) -> None:
    target = start("service.py").wait_ready()
    # GIVEN every slot held by a client that said hello and then nothing
    holders = []
    for _ in range(agent_server.MAX_CLIENTS):
        holder = RawClient(target.pid)
        holder.send(HELLO)
        assert holder.read()["type"] == "hello"  # type: ignore[index]
        holders.append(holder)
    try:
        # WHEN one more client comes at once, it hears who holds the slots
        with pytest.raises(ClientError) as refused:
            AgentClient(target.pid, timeout=5).connect()
        assert "busy" in str(refused.value)
        assert f"processes {os.getpid()}" in str(refused.value)

        # THEN once the holders have been idle for a while, a newcomer takes a slot
        def served() -> bool:
            try:
                with AgentClient(target.pid, timeout=5) as client:
                    return client.snapshot()["pid"] == target.pid
            except ClientError:
                return False

        wait_for(served, agent_server.IDLE_EVICTABLE + 10, "a slot given up by an idle client")
        told = []
        for holder in holders:
            holder.sock.settimeout(0.05)
            try:
                told.append(holder.read())
            except TimeoutError:
                pass  # still holding its slot
        assert told and all(reply is None or reply["code"] == "evicted" for reply in told)
    finally:
        for holder in holders:
            holder.close()


# --- 3. a live agent is never lost ------------------------------------------------------------


def test_list_never_deletes_the_socket_of_a_live_process(start: Any, socket_dir: str) -> None:
    # GIVEN a live process whose socket refuses connections for now (nobody accepts on it)
    target = start("service.py", agent=False).wait_ready()
    path = socket_path(target.pid)
    placeholder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    placeholder.bind(path)  # bound, not listening: connect() fails with ECONNREFUSED
    # AND a socket left by a process that is gone
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead_path = socket_path(int(gone.stdout))
    Path(dead_path).write_text("")
    try:
        # WHEN the agents are listed
        pids = live_agents(clean=True)
        # THEN the live process's socket stays, and the dead one's goes
        assert target.pid in pids
        assert os.path.exists(path)
        assert not os.path.exists(dead_path)
    finally:
        placeholder.close()
        os.unlink(path)


def test_an_agent_whose_socket_vanished_makes_a_new_one_when_asked(start: Any) -> None:
    target = start("service.py").wait_ready()
    path = socket_path(target.pid)
    os.unlink(path)  # deleted by a careless tool
    # WHEN the user asks for it (taskscope loads the agent again: install() runs once more)
    result = run_cli("ps", str(target.pid), timeout=60)
    # THEN the agent listens again and answers
    assert result.returncode == 0, result.stderr
    assert "worker-0" in result.stdout
    assert os.path.exists(path)
    with AgentClient(target.pid) as client:
        assert client.snapshot()["pid"] == target.pid


# --- 4 and 5. fork ---------------------------------------------------------------------------


def _forked_pids(target: Any) -> list[int]:
    notes = target.file(f"notes-{target.pid}")
    if not notes.exists():
        return []
    return [
        int(line.split()[1]) for line in notes.read_text().splitlines() if line.startswith("forked")
    ]


def test_forking_prints_nothing_and_the_agent_answers_after(start: Any) -> None:
    # GIVEN a program that forks before its loop runs and from inside its loop, with -W so
    # that Python shows every DeprecationWarning
    target = start("forker.py", "loop", "exit", env={"PYTHONWARNINGS": "default"}).wait_ready()
    assert len(_forked_pids(target)) == 2
    # THEN the agent answers after the forks (its thread was started again)
    with AgentClient(target.pid, timeout=5) as client:
        assert any(task["name"] == "ticker" for task in client.snapshot()["tasks"])
    code, out, err = target.stop()
    # AND the program printed what it prints without the agent: no warning about threads
    assert (code, out, err) == (0, "done\n", "")


def test_killing_a_forked_parent_ends_its_subscriptions_within_a_second(start: Any) -> None:
    # GIVEN a program that forked a long-lived child (which inherited its descriptors)
    target = start("forker.py", "loop").wait_ready()
    children = _forked_pids(target)
    assert len(children) == 2
    try:
        client = AgentClient(target.pid, timeout=5)
        client.connect()
        updates = client.subscribe(interval=0.1)
        next(updates)
        # AND forked once more while the subscriber is connected
        target.file(f"fork-{target.pid}").write_text("fork")
        wait_for(lambda: len(_forked_pids(target)) == 3, 10, "the fork")
        children = _forked_pids(target)
        next(updates)
        # WHEN the parent is killed with SIGKILL mid-subscription
        os.kill(target.pid, signal.SIGKILL)
        killed = time.monotonic()
        # THEN the subscriber hears the end within a second, though the children live on
        ended = False
        try:
            for _ in updates:
                assert time.monotonic() - killed < 1.0
        except ClientError:
            ended = True
        assert ended and time.monotonic() - killed < 1.0
        client.close()
    finally:
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_an_exec_ends_the_subscriptions_within_a_second(start: Any) -> None:
    target = start("forker.py", "loop", "exit").wait_ready()
    client = AgentClient(target.pid, timeout=5)
    client.connect()
    updates = client.subscribe(interval=0.1)
    next(updates)
    # WHEN the program execs another one (same pid, none of the agent's sockets inherited)
    target.file(f"exec-{target.pid}").write_text("exec")
    asked = time.monotonic()
    ended = False
    try:
        for _ in updates:
            assert time.monotonic() - asked < 2.0
    except ClientError:
        ended = True
    # THEN the subscriber hears the end at once (the 0.05 s the program takes to notice)
    assert ended and time.monotonic() - asked < 1.0
    client.close()
    assert target.process.poll() is None


# --- 6. cancel through an await cycle -----------------------------------------------------------


def test_cancelling_a_task_that_awaits_an_await_cycle_cancels_it(start: Any) -> None:
    target = start("cycle_waiter.py").wait_ready()
    with AgentClient(target.pid) as client:
        ids = {task["name"]: task["id"] for task in client.snapshot()["tasks"]}
    result = run_cli("cancel", str(target.pid), ids["waiter-c"])
    assert result.returncode == 0, result.stderr
    assert "cancel requested" in result.stdout
    notes = target.file(f"notes-{target.pid}")
    wait_for(lambda: notes.exists() and "waiter-c cancelled" in notes.read_text(), 10, "C's end")
    code, _out, err = target.stop()
    assert code == 0 and err == ""
    # The cycle itself was left alone, not half-cancelled.
    assert "main still healthy, cycle-a cancelling=0" in notes.read_text()


def test_a_cancel_the_loop_cannot_run_yet_is_reported_as_queued(start: Any) -> None:
    target = start("blocked.py", "4").wait_ready()
    with AgentClient(target.pid) as client:
        ids = {task["name"]: task["id"] for task in client.snapshot()["tasks"]}
        wait_for(lambda: client.snapshot()["loops"][0]["blocked_for"], 5, "the loop to block")
        assert client.cancel(ids["bystander"]) == "queued"


def test_a_cancel_on_a_blocked_loop_does_not_blame_the_gil(start: Any) -> None:
    # A cancel's reply waits up to a second for the loop by design: the CLI must not take
    # that wait for a call holding the GIL.
    target = start("blocked.py", "4").wait_ready()
    with AgentClient(target.pid) as client:
        ids = {task["name"]: task["id"] for task in client.snapshot()["tasks"]}
        wait_for(lambda: client.snapshot()["loops"][0]["blocked_for"], 5, "the loop to block")
    result = run_cli("cancel", str(target.pid), f"id:{ids['bystander']}")
    assert result.returncode == 0, result.stderr
    assert "GIL" not in result.stderr and "GIL" not in result.stdout
    assert "blocked" in result.stdout


# --- 7. dump is inert in a terminal ----------------------------------------------------------


ODD_NAMES = [  # as in tests/targets/odd_names.py
    "csi\x9b31mred",
    "rtl\u202eevil",
    "zero\u200bwidth",
    "del\x7fete",
    "iso\u2066late\u2069",
    "line\u2028sep",
    "bom\ufeffmark",
    "c1\x85nel",
]


def test_dump_escapes_characters_a_terminal_would_act_on(start: Any) -> None:
    target = start("odd_names.py").wait_ready()
    result = run_cli("dump", str(target.pid))
    assert result.returncode == 0, result.stderr
    unsafe = [
        ch
        for ch in result.stdout
        if 0x7F <= ord(ch) <= 0x9F or ch in "\u200b\u202e\u2066\u2069\u2028\ufeff"
    ]
    assert unsafe == []
    names = {task["name"] for task in json.loads(result.stdout)["tasks"]}
    assert set(ODD_NAMES) <= names


# --- 9. errors a user meets ------------------------------------------------------------------


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make another user's directory")
def test_run_starts_the_program_when_the_socket_directory_is_not_private(
    tmp_path: Path,
) -> None:
    # GIVEN the usual socket directory made by another user, open to all
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    hostile = runtime / "taskscope"
    hostile.mkdir()
    os.chown(hostile, 65534, 65534)
    hostile.chmod(0o777)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TASKSCOPE_SOCKET_DIR", "XDG_RUNTIME_DIR")
    }
    env.update(XDG_RUNTIME_DIR=str(runtime), HOME=str(home))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    workdir = tmp_path / "work"
    workdir.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "taskscope", "run", str(TARGETS / "service.py"), str(workdir)],
        env=env,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # THEN the program starts, with its agent in a private directory of the user's home
        wait_for(lambda: (workdir / f"ready-{process.pid}").exists(), 20, "the program")
        fallback = home / ".taskscope-sockets" / f"{process.pid}.sock"
        wait_for(fallback.exists, 10, "the agent's socket in the fallback directory")
        # AND the CLI finds it there
        result = subprocess.run(
            [sys.executable, "-m", "taskscope", "ps", "--no-inject", str(process.pid)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert "worker-0" in result.stdout
    finally:
        process.kill()
        _out, err = process.communicate()
    assert "Traceback" not in err and err == ""


def test_run_goes_on_without_the_agent_when_it_cannot_listen(start: Any, tmp_path: Path) -> None:
    # GIVEN a chosen socket directory open to everyone
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    target = start("service.py", agent=True, env={"TASKSCOPE_SOCKET_DIR": str(open_dir)})
    wait_for(target.ready_file.exists, 20, "the program to start")
    code, _out, err = target.stop()
    # THEN the program ran to its end (service.py exits with 3), and the agent said why it
    # is off in one line
    assert code == 3 and "Traceback" not in err
    assert err.splitlines() == [
        f"taskscope: agent not started: {open_dir} is readable or writable by others; "
        "remove it or set TASKSCOPE_SOCKET_DIR to a private directory",
        "service stopped",  # what the program itself says
    ]


#: One that other users can run (ours lives under /root): the system's python3, or in the
#: sid chroot, its python3.X of this version.
SYSTEM_PYTHON = next(
    (
        path
        for path in (
            "/usr/bin/python3",
            f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}",
        )
        if os.path.exists(path)
    ),
    "/usr/bin/python3",
)


@pytest.mark.skipif(
    os.getuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
    reason="needs root to start processes as other users, and a system Python",
)
def test_no_inject_on_another_users_process_says_who_may_connect(tmp_path: Path) -> None:
    other = subprocess.Popen(
        [SYSTEM_PYTHON, "-c", "import time; time.sleep(60)"], user=65534, group=65534, cwd="/"
    )
    try:
        env = {k: v for k, v in os.environ.items() if k != "TASKSCOPE_SOCKET_DIR"}
        env["PYTHONPATH"] = str(REPO)
        result = subprocess.run(
            [SYSTEM_PYTHON, "-m", "taskscope", "ps", "--no-inject", str(other.pid)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
            user=1,  # daemon: neither root nor the process's user
        )
    finally:
        other.kill()
        other.wait()
    assert result.returncode == 1
    assert result.stderr.startswith(f"taskscope: process {other.pid} runs as nobody (uid 65534)")
    assert "only that user or root may connect" in result.stderr


# --- 8. a call that holds the GIL --------------------------------------------------------------


def test_ps_says_blocked_when_a_call_holds_the_gil(start: Any) -> None:
    # GIVEN a loop thread about to hold the GIL for 4 s in one C call
    target = start("gil_hog.py", "4").wait_ready()
    notes = target.file(f"notes-{target.pid}")
    target.file(f"hog-{target.pid}").write_text("hog")
    wait_for(lambda: notes.exists() and "hogging" in notes.read_text(), 10, "the call")
    # WHEN the user asks for the tasks meanwhile
    result = run_cli("ps", "--no-inject", str(target.pid))
    # THEN a note says at once why there is no answer yet, and the answer says BLOCKED
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"taskscope: process {target.pid} has not answered for 1 s")
    assert "it keeps its agent from the GIL (a call that holds it" in result.stderr
    # (blocked still, when the agent ran before the loop's heartbeat; else, blocked until
    # just before the answer)
    assert "BLOCKED for 3." in result.stdout.splitlines()[0] or (
        "BLOCKED for 4." in result.stdout.splitlines()[0]
    )
    assert "released" in notes.read_text()


def test_an_agent_loaded_into_a_forked_child_shows_only_the_childs_loop(start: Any) -> None:
    # GIVEN a child forked inside a coroutine, running a loop of its own
    parent = start("fork_in_loop.py", agent=False).wait_ready()
    child = wait_for(lambda: _forked_pids(parent), 10, "the fork")[0]
    wait_for(parent.file(f"ready-{child}").exists, 10, "the child's loop")
    try:
        # WHEN the agent is loaded into the child
        result = run_cli("dump", str(child), timeout=60)
        assert result.returncode == 0, result.stderr
        snapshot = json.loads(result.stdout)
        # THEN it shows the child's loop and tasks, not the parent's frozen copy
        assert len(snapshot["loops"]) == 1
        names = {task["name"] for task in snapshot["tasks"]}
        assert "child-worker" in names and "parent-worker" not in names
    finally:
        parent.file(f"stop-{child}").write_text("stop")
        parent.stop()
