"""A program written with trio: `main` opens a nursery of tasks, one per common trio wait, and
waits for them in the nursery's `__aexit__`. `sleeper` sleeps for an hour (noting `sleeper
cancelled` when cancelled), `waiter` waits on an Event, `holder` holds `lock`, `gate` (a
Semaphore of 1) and `limiter` (a CapacityLimiter of 1) while `lock-waiter`, `gate-waiter`
and `limit-waiter` wait for them, `receiver` waits on an
empty memory channel and `sender` on a full one, `reader` reads a socket nobody writes to and
`stream-reader` a TCP stream nobody writes to, `threaded` waits for a worker thread
(`to_thread.run_sync`), `parent` waits on a nursery of its own holding `child` (noting `child
cancelled`, then `parent went on` after the nursery), `guarded` waits on the Event inside a
cancel scope of its own (noting `guarded cancelled` when it is cancelled, then `guarded went
on` after it). `stopper` blocks trio's thread for 4 s when a `block-PID` file appears (noting
`blocking`, then `unblocked`); for the seconds a `short-block-PID` file says (noting
`short-blocked`); in steps of the seconds a `short-steps-PID` file says, for 1.2 s, with a
checkpoint between them (noting `short-stepped`), both in `hold_the_thread`; and ends it all
when the stop file appears.

Arguments: WORKDIR [--install-inside] (calls `taskscope.install()` from inside `trio.run`)
[--install-before] (before it). Without either, the program never imports taskscope."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

import trio
from target_kit import WORKDIR, note, signal_ready, stop_requested


async def sleeper() -> None:
    try:
        await trio.sleep(3600)
    except trio.Cancelled:
        note("sleeper cancelled")
        raise


async def waiter(event: trio.Event) -> None:
    await event.wait()


async def holder(lock: trio.Lock, gate: trio.Semaphore, limiter: trio.CapacityLimiter) -> None:
    async with lock, gate, limiter:
        await trio.sleep_forever()


async def limit_waiter(limiter: trio.CapacityLimiter) -> None:
    async with limiter:
        pass


async def lock_waiter(lock: trio.Lock) -> None:
    async with lock:
        pass


async def gate_waiter(gate: trio.Semaphore) -> None:
    async with gate:
        pass


async def receiver(inbox: trio.MemoryReceiveChannel[int]) -> None:
    await inbox.receive()


async def sender(outbox: trio.MemorySendChannel[int]) -> None:
    await outbox.send(1)


async def reader(sock: trio.socket.SocketType) -> None:
    await sock.recv(100)


async def stream_reader(stream: trio.SocketStream) -> None:
    await stream.receive_some(100)


async def threaded(release: threading.Event) -> None:
    await trio.to_thread.run_sync(release.wait)


async def child() -> None:
    try:
        await trio.sleep_forever()
    except trio.Cancelled:
        note("child cancelled")
        raise


async def parent() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(child, name="child")
    note("parent went on")


async def guarded(event: trio.Event) -> None:
    with trio.CancelScope():
        try:
            await event.wait()
        except trio.Cancelled:
            note("guarded cancelled")
            raise
    note("guarded went on")
    await trio.sleep_forever()


def hold_the_thread(seconds: float) -> None:
    time.sleep(seconds)  # the blocking line


async def stopper(nursery: trio.Nursery, release: threading.Event) -> None:
    cue = WORKDIR / f"block-{os.getpid()}"
    short_cue = WORKDIR / f"short-block-{os.getpid()}"
    steps_cue = WORKDIR / f"short-steps-{os.getpid()}"
    while not stop_requested():
        if cue.exists():
            cue.unlink()
            note("blocking")
            time.sleep(4)  # holds trio's thread: the run is blocked meanwhile
            note("unblocked")
        if short_cue.exists():
            seconds = float(short_cue.read_text())
            short_cue.unlink()
            hold_the_thread(seconds)
            await trio.lowlevel.checkpoint()  # noted once this step is over
            note("short-blocked")
        if steps_cue.exists():
            seconds = float(steps_cue.read_text())
            steps_cue.unlink()
            for _ in range(round(1.2 / seconds)):  # steps of `seconds`, for 1.2 s
                hold_the_thread(seconds)
                await trio.lowlevel.checkpoint()
            note("short-stepped")
        await trio.sleep(0.05)
    release.set()
    nursery.cancel_scope.cancel()


async def main() -> None:
    if "--install-inside" in sys.argv:
        import taskscope

        taskscope.install()
    event, lock, gate = trio.Event(), trio.Lock(), trio.Semaphore(1)
    limiter = trio.CapacityLimiter(1)
    release = threading.Event()
    outbox, _unread = trio.open_memory_channel[int](0)  # nobody receives: a send waits
    _unwritten, inbox = trio.open_memory_channel[int](0)  # nobody sends: a receive waits
    one, _other = socket.socketpair()
    quiet = trio.socket.from_stdlib_socket(one)
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper, name="sleeper")
        nursery.start_soon(waiter, event, name="waiter")
        nursery.start_soon(holder, lock, gate, limiter, name="holder")
        await trio.sleep(0.02)
        nursery.start_soon(lock_waiter, lock, name="lock-waiter")
        nursery.start_soon(gate_waiter, gate, name="gate-waiter")
        nursery.start_soon(limit_waiter, limiter, name="limit-waiter")
        nursery.start_soon(receiver, inbox, name="receiver")
        nursery.start_soon(sender, outbox, name="sender")
        nursery.start_soon(reader, quiet, name="reader")
        nursery.start_soon(stream_reader, stream, name="stream-reader")
        nursery.start_soon(threaded, release, name="threaded")
        nursery.start_soon(parent, name="parent")
        nursery.start_soon(guarded, event, name="guarded")
        nursery.start_soon(stopper, nursery, release, name="stopper")
        await trio.sleep(0.05)
        signal_ready()
    note("main ended")


if "--install-before" in sys.argv:
    import taskscope

    taskscope.install()
trio.run(main)
