"""`taskscope dump PID` asks the agent for its snapshot before the command line's imports: the
agent's look at a large process (tenths of a second at 100,000 tasks) then runs while this
side imports what it needs to write the answer (a tenth of a second), instead of after it.

The entry point (`taskscope.__main__`: `python -m taskscope` and the `taskscope` script)
calls `send_ahead` with the arguments first; this module imports only the protocol and the
process facts. It acts only on the plain form, `dump PID`, when the process has no
children (a parent's workers are each asked by the fleet), an agent listens for it and the
socket is served by the process: it then sends `hello` (compact encoding) and `snapshot` on
one connection, which the CLI's dump takes (`take`) for the first `AgentClient` of its
`LiveSource` to read the replies of, with the same messages as when it asks itself.
Anything else, or any failure here, leaves it all to the ordinary path, which says what is
wrong in one line.
"""

from __future__ import annotations

import os
import socket
import struct

from taskscope.process_facts import has_children
from taskscope.protocol import (
    COMPACT,
    PROTOCOL_VERSION,
    encode,
    socket_directories,
    socket_path,
)

#: The ids of the two requests sent ahead.
HELLO_ID = 1
SNAPSHOT_ID = 2
#: The environment variable that makes clients ask for the plain encoding (client.py).
ENCODING_ENV = "TASKSCOPE_ENCODING"


class SentAhead:
    """A connection to the agent of `pid` (at `path`) on which `hello` (id `HELLO_ID`,
    asking for the compact encoding) and `snapshot` (id `SNAPSHOT_ID`, finished tasks
    included) were sent, their replies unread; `sock` is None once a client took it."""

    def __init__(self, pid: int, sock: socket.socket, path: str) -> None:
        self.pid = pid
        self.sock: socket.socket | None = sock
        self.path = path


_ahead: list[SentAhead] = []
_PEERCRED = struct.Struct("3i")


def send_ahead(arguments: list[str], timeout: float = 10.0) -> SentAhead | None:
    """For `dump PID` (nothing else on the command line), the connection with both
    requests sent, kept for `take`; None (nothing done) otherwise."""
    if len(arguments) != 2 or arguments[0] != "dump" or not arguments[1].isdigit():
        return None
    if os.environ.get(ENCODING_ENV, COMPACT) not in ("", COMPACT):
        return None
    pid = int(arguments[1])
    if pid <= 0 or has_children(pid) is not False:
        return None
    directories = socket_directories()
    path = next(
        (
            socket_path(pid, directory)
            for directory in directories
            if os.path.exists(socket_path(pid, directory))
        ),
        None,
    )
    if path is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        if _PEERCRED.unpack(raw)[0] != pid:
            raise OSError("served by another process")
        hello = {
            "type": "hello",
            "id": HELLO_ID,
            "protocol": PROTOCOL_VERSION,
            "encoding": COMPACT,
        }
        snapshot = {"type": "snapshot", "id": SNAPSHOT_ID, "include_finished": True}
        sock.sendall(encode(hello) + encode(snapshot))
    except OSError:
        sock.close()
        return None
    ahead = SentAhead(pid, sock, path)
    _ahead[:] = [ahead]
    return ahead


def take(pid: int) -> SentAhead | None:
    """The connection `send_ahead` made for `pid`, once (None when there is none)."""
    for ahead in _ahead:
        if ahead.pid == pid:
            _ahead.clear()
            return ahead
    return None
