"""What every test target shares: the ready signal and the stop request, both as files in the
working directory the test gives as the first argument."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

WORKDIR = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()


def signal_ready() -> None:
    (WORKDIR / f"ready-{os.getpid()}").write_text("ready")


def stop_requested() -> bool:
    return (WORKDIR / f"stop-{os.getpid()}").exists()


def note(text: str) -> None:
    """Append a line to the target's notes file, which tests read to see effects."""
    with open(WORKDIR / f"notes-{os.getpid()}", "a") as notes:
        notes.write(text + "\n")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of asking, for a server to listen on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_for_port(port: int) -> None:
    """Until a server accepts connections on 127.0.0.1:`port`."""
    while True:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        return


async def send(port: int, request: bytes) -> asyncio.StreamWriter:
    """Sends `request` (the bytes of an HTTP request) to 127.0.0.1:`port`; the connection
    stays open for as long as the writer is kept."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    return writer


def get(path: str) -> bytes:
    """The bytes of a GET request for `path`."""
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


async def until_stopped() -> None:
    while not stop_requested():
        await asyncio.sleep(0.05)


async def child() -> None:
    await asyncio.sleep(3600)


async def spawner() -> None:
    """Creates `child-of-spawner` and awaits it."""
    await asyncio.create_task(child(), name="child-of-spawner")


async def victim() -> None:
    """Sleeps until cancelled, and notes `victim cancelled` then."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        note("victim cancelled")
        raise


async def blocker() -> None:
    """Once a file `block-PID` appears in WORKDIR, holds its loop in time.sleep(the seconds
    written in it, 3 if none), noting "blocking" before and "unblocked" after; once."""
    request = WORKDIR / f"block-{os.getpid()}"
    while not request.exists():
        await asyncio.sleep(0.02)
    seconds = float(request.read_text() or "3")
    request.unlink()
    note("blocking")
    time.sleep(seconds)
    note("unblocked")
    await asyncio.sleep(3600)
