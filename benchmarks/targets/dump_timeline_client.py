"""`taskscope dump PID` with a timeline: run as `python dump_timeline_client.py PID`, with the
checkout to time on PYTHONPATH; it dumps to stdout as the command does (its requests sent
ahead of the imports where the checkout does that: taskscope/early.py), and prints on stderr,
as its last line, one JSON object of `time.monotonic()` marks (one clock for every process of
the machine): when it started (after the interpreter's own start), its imports done, each
request sent, each piece of a reply received, the first and last piece of output written, the
end. Used by `benchmarks/host_cost.py --only dump` (where a dump's time goes).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any

STARTED = time.monotonic()
marks: dict[str, Any] = {"started": STARTED, "sent": [], "received": [], "sizes": []}
_send, _recv, _recv_into = socket.socket.sendall, socket.socket.recv, socket.socket.recv_into


def sendall(self: socket.socket, data: Any, *args: Any) -> None:
    _send(self, data, *args)
    marks["sent"].append(time.monotonic())


def recv(self: socket.socket, size: int, *args: Any) -> bytes:
    data = _recv(self, size, *args)
    marks["received"].append(time.monotonic())
    marks["sizes"].append(len(data))
    return data


def recv_into(self: socket.socket, buffer: Any, *args: Any) -> int:
    size = _recv_into(self, buffer, *args)
    marks["received"].append(time.monotonic())
    marks["sizes"].append(size)
    return size


class TimedOut:
    """stdout, noting when the first and the last piece of output were written."""

    def __init__(self, out: Any) -> None:
        self._out = out

    def write(self, text: str) -> int:
        if "first_output" not in marks:
            marks["first_output"] = time.monotonic()
        written = self._out.write(text)
        marks["last_output"] = time.monotonic()
        return int(written)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)


socket.socket.sendall = sendall  # type: ignore[method-assign]
socket.socket.recv = recv  # type: ignore[method-assign]
socket.socket.recv_into = recv_into  # type: ignore[method-assign]


def main() -> int:
    try:  # as `python -m taskscope` does, where the checkout has it
        from taskscope.early import send_ahead
    except ImportError:
        pass
    else:
        send_ahead(["dump", *sys.argv[1:]])
    from taskscope.cli import main as taskscope_main

    marks["imported"] = time.monotonic()
    sys.stdout = TimedOut(sys.stdout)  # type: ignore[assignment]
    try:
        status = taskscope_main(["dump", *sys.argv[1:]])
        sys.stdout.flush()
    finally:
        marks["ended"] = time.monotonic()
        print(json.dumps(marks), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
