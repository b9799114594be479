"""The agent is a guest: private socket, peer uid checked, hostile input answered or dropped
without harm to the host program, no request that runs code."""

from __future__ import annotations

import json
import os
import socket
import stat
from typing import Any

import pytest

from taskscope.client import AgentClient
from taskscope.process_facts import user_name
from taskscope.protocol import MAX_REQUEST_BYTES, REQUEST_TYPES, socket_path
from tests.helpers import wait_for


def raw_exchange(pid: int, payload: bytes, read_lines: int = 1) -> list[dict[str, Any]]:
    """Send raw bytes to the agent and read up to `read_lines` replies (fewer if it closes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(socket_path(pid))
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        replies: list[dict[str, Any]] = []
        buffer = b""
        while len(replies) < read_lines:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer and len(replies) < read_lines:
                line, buffer = buffer.split(b"\n", 1)
                replies.append(json.loads(line))
        return replies


def test_socket_and_directory_are_private(start: Any, socket_dir: str) -> None:
    target = start("service.py").wait_ready()
    path = socket_path(target.pid)
    assert os.path.dirname(path) == socket_dir
    assert stat.S_IMODE(os.stat(socket_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(path).st_mode)


HOSTILE = [
    (b"not json\n", "bad_request"),
    (b'{"type": "hello", "protocol": 2}\n[1, 2, 3]\n', "bad_request"),
    (b'{"type": "hello", "protocol": 2}\n{"type": "exec", "code": "1"}\n', "unknown_type"),
    (b'{"type": "hello", "protocol": 2}\n{"type": "cancel", "task": "1; rm"}\n', "bad_request"),
    (b'{"type": "hello", "protocol": 2}\n{"type": "subscribe", "interval": 0}\n', "bad_request"),
    (
        b'{"type": "hello", "protocol": 2}\n{"type": "cancel", "task": "1", "message": 5}\n',
        "bad_request",
    ),
    (b'{"type": "snapshot"}\n', "bad_request"),  # before hello
    (b'{"type": "hello", "protocol": 99}\n', "version_mismatch"),
    (b"[" * 100000 + b"\n", "too_large"),
]


@pytest.mark.parametrize(("payload", "code"), HOSTILE, ids=[code for _, code in HOSTILE])
def test_hostile_input_gets_an_error_and_the_host_lives_on(
    start: Any, payload: bytes, code: str
) -> None:
    target = start("service.py").wait_ready()
    replies = raw_exchange(target.pid, payload, read_lines=2)
    errors = [reply for reply in replies if reply["type"] == "error"]
    assert errors and errors[0]["code"] == code
    # The agent still serves, and the program still runs.
    with AgentClient(target.pid) as client:
        assert any(task["name"] == "worker-0" for task in client.snapshot()["tasks"])
    assert target.process.poll() is None


def test_oversized_and_truncated_input_close_the_connection_only(start: Any) -> None:
    target = start("service.py").wait_ready()
    replies = raw_exchange(target.pid, b"x" * (MAX_REQUEST_BYTES * 2), read_lines=1)
    assert replies and replies[0]["code"] == "too_large"
    # A request cut in the middle, then the client leaves.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(socket_path(target.pid))
        sock.sendall(b'{"type": "hello", "proto')
    with AgentClient(target.pid) as client:
        assert client.snapshot()["pid"] == target.pid
    assert target.process.poll() is None


def test_there_is_no_request_that_runs_code() -> None:
    # detach runs no code sent by the client: it stops the agent, as uninstall() does; flight
    # hands out what the agent's flight recorder kept; time_steps takes a boolean only and puts
    # the agent's own timed Handle._run on (or takes it off).
    assert REQUEST_TYPES == {
        "hello",
        "snapshot",
        "subscribe",
        "stack",
        "cancel",
        "detach",
        "flight",
        "time_steps",
    }


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_a_peer_with_another_uid_is_refused(start: Any, socket_dir: str) -> None:
    # GIVEN an agent whose socket another user could reach (directory opened up on purpose)
    target = start("service.py").wait_ready()
    path = socket_path(target.pid)
    os.chmod(socket_dir, 0o755)
    os.chmod(path, 0o666)
    read_end, write_end = os.pipe()
    try:
        # WHEN user nobody connects and says hello (a forked child that drops root)
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            try:
                os.setgid(65534)
                os.setuid(65534)
                client = AgentClient(target.pid, timeout=5, socket_dir=socket_dir)
                client.connect()
                answer = "connected"
            except Exception as error:
                answer = f"{type(error).__name__}: {error}"
            os.write(write_end, answer.encode())
            os._exit(0)
        os.waitpid(child, 0)
        answer = os.read(read_end, 1000).decode()
    finally:
        os.close(read_end)
        os.close(write_end)
        os.chmod(socket_dir, 0o700)
        os.chmod(path, 0o600)
    # THEN the agent hangs up, and the client says who may connect
    owner = user_name(os.getuid())
    assert answer.startswith("PermissionDenied: ")
    assert f"runs as {owner}: only that user or root may connect" in answer
    with AgentClient(target.pid) as client:  # while its owner is still served
        assert client.snapshot()["pid"] == target.pid
    assert target.process.poll() is None


def test_agent_answers_many_clients_and_survives_them_leaving(start: Any) -> None:
    target = start("service.py").wait_ready()
    clients = [AgentClient(target.pid) for _ in range(10)]
    for client in clients:
        client.connect()
    for client in clients[::2]:
        client.close()
    for client in clients[1::2]:
        assert client.snapshot()["pid"] == target.pid
        client.close()
    wait_for(lambda: target.process.poll() is None, what="the host to keep running")
