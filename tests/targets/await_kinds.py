"""A real asyncio program that is, all at once, suspended in every kind of await taskscope
recognises, each in a task named for it; plus a few finished tasks for the history.

Run it as `python -m taskscope.agent.launch tests/targets/await_kinds.py READY_FILE`. When every
task sits where it should, it writes READY_FILE (JSON facts the test checks against: ports,
pids) and then runs until it gets SIGTERM or SIGINT, on which it kills its child process and
exits at once (a clean asyncio shutdown would cancel the await cycle, which recurses without
end inside asyncio).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any

FOREVER = 3600.0
SLEEP_SECONDS = 1000.0
TIMEOUT_SECONDS = 500.0
WAIT_FOR_SECONDS = 300.0

#: Released at exit so the executor threads end and the interpreter can leave.
release_threads = threading.Event()


#: Created if the agent ever runs application code (the test checks it does not exist).
app_code_marker = sys.argv[1] + ".app-code-called" if len(sys.argv) > 1 else os.devnull


def application_code_ran(what: str) -> str:
    with open(app_code_marker, "a") as out:
        out.write(what + "\n")
    return what


class Ticket(asyncio.Future[Any]):
    """A custom Future subclass: the agent must describe it without calling its methods."""

    def __repr__(self) -> str:
        return application_code_ran("Ticket.__repr__")

    def __str__(self) -> str:
        return application_code_ran("Ticket.__str__")


class TicketWindow:
    """A hand-written awaitable: `__await__` is a generator that yields a Ticket."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ticket = Ticket(loop=loop)

    def __await__(self) -> Generator[Any, None, Any]:
        result = yield from self.ticket
        return result


def blocking_wait() -> str:
    release_threads.wait()
    return "released"


async def forever() -> None:
    await asyncio.sleep(FOREVER)


async def slow_step() -> None:
    await asyncio.sleep(FOREVER)


async def waits_on_task(target: asyncio.Task[None]) -> None:
    await target


async def gather_parent() -> None:
    first = asyncio.create_task(forever(), name="gather-child-1")
    second = asyncio.create_task(forever(), name="gather-child-2")
    await asyncio.gather(first, second)


async def tg_parent() -> None:
    async with asyncio.TaskGroup() as tg:
        tg.create_task(forever(), name="tg-child-1")
        tg.create_task(forever(), name="tg-child-2")


async def sleeper() -> None:
    await asyncio.sleep(SLEEP_SECONDS)


async def recursion(depth: int) -> None:
    """A chain of `depth` coroutines, deeper than a stack keeps, that sleeps at its end."""
    if depth:
        return await recursion(depth - 1)
    await asyncio.sleep(SLEEP_SECONDS)


async def endless_sleeper() -> None:
    await asyncio.sleep(math.inf)  # anyio's sleep_forever: a timer that never fires


async def endless_timeout() -> None:
    async with asyncio.timeout(math.inf):
        await asyncio.sleep(SLEEP_SECONDS)


async def timeout_holder() -> None:
    async with asyncio.timeout(TIMEOUT_SECONDS):
        await asyncio.sleep(FOREVER)


async def queue_joiner(backlog: asyncio.Queue[int]) -> None:
    await backlog.join()


async def queue_getter(jobs: asyncio.Queue[int]) -> int:
    return await jobs.get()


async def queue_putter(results: asyncio.Queue[int]) -> None:
    await results.put(2)


async def lock_waiter(lock: asyncio.Lock) -> None:
    async with lock:
        pass


async def sem_waiter(sem: asyncio.Semaphore) -> None:
    async with sem:
        pass


async def bsem_waiter(bsem: asyncio.BoundedSemaphore) -> None:
    async with bsem:
        pass


async def cond_waiter(cond: asyncio.Condition) -> None:
    async with cond:
        await cond.wait()


async def event_waiter(event: asyncio.Event) -> None:
    await event.wait()


async def barrier_waiter(barrier: asyncio.Barrier) -> None:
    await barrier.wait()


async def stream_reader(reader: asyncio.StreamReader) -> bytes:
    return await reader.read(100)


async def stream_drainer(writer: asyncio.StreamWriter) -> None:
    await writer.drain()


async def sock_recv(sock: socket.socket) -> bytes:
    return await asyncio.get_running_loop().sock_recv(sock, 100)


async def tls_client(port: int) -> None:
    """Connects with TLS to a server that never answers the handshake."""
    context = ssl.create_default_context()
    await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="quiet")


async def executor() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, blocking_wait)


async def to_thread() -> str:
    return await asyncio.to_thread(blocking_wait)


async def subprocess_waiter(proc: asyncio.subprocess.Process) -> int:
    return await proc.wait()


async def bare_future(parked: asyncio.Future[None]) -> None:
    await parked


async def shielded_future(kept: asyncio.Future[None]) -> None:
    await asyncio.shield(kept)


async def custom_awaitable(window: TicketWindow) -> Any:
    return await window


async def shield_parent(shielded: asyncio.Task[None]) -> None:
    await asyncio.shield(shielded)


async def wait_parent() -> None:
    children = {
        asyncio.create_task(forever(), name="wait-child-1"),
        asyncio.create_task(forever(), name="wait-child-2"),
    }
    await asyncio.wait(children)


async def wait_for_parent() -> None:
    await asyncio.wait_for(slow_step(), WAIT_FOR_SECONDS)


async def as_completed_parent() -> None:
    children = [
        asyncio.create_task(forever(), name="ac-child-1"),
        asyncio.create_task(forever(), name="ac-child-2"),
    ]
    for next_done in asyncio.as_completed(children):
        await next_done


async def ticker() -> AsyncIterator[int]:
    while True:
        await asyncio.sleep(FOREVER)
        yield 1


async def asyncgen_consumer() -> None:
    async for _tick in ticker():
        pass


cycle: dict[str, asyncio.Task[None]] = {}


async def cycle_member(other: str, both_started: asyncio.Event) -> None:
    await both_started.wait()
    await cycle[other]


async def returns_42() -> int:
    return 42


async def raises_bad_row() -> None:
    raise ValueError("bad row")


async def serve_forever(server: asyncio.Server) -> None:
    await server.serve_forever()


async def settle(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run until `condition()` holds (each task has reached its await)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise RuntimeError(f"never got ready: {what}")


def waiting(task: asyncio.Task[Any]) -> bool:
    return not task.done() and getattr(task, "_fut_waiter", None) is not None


def write_ready(path: str, facts: dict[str, Any]) -> None:
    with open(path + ".tmp", "w") as out:
        json.dump(facts, out)
    os.replace(path + ".tmp", path)


async def main(ready_path: str) -> None:
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    me.set_name("main")
    started: list[asyncio.Task[Any]] = []

    def spawn(coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        started.append(task)
        return task

    # Finished tasks, for the history: a result, an exception, a cancellation.
    ok = asyncio.create_task(returns_42(), name="finished-ok")
    failed = asyncio.create_task(raises_bad_row(), name="finished-failed")
    cancelled = asyncio.create_task(forever(), name="finished-cancelled")
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait({ok, failed, cancelled})
    assert failed.exception() is not None

    waited = spawn(forever(), "waited-task")
    spawn(waits_on_task(waited), "waits-on-task")
    spawn(gather_parent(), "gather-parent")
    spawn(tg_parent(), "tg-parent")
    spawn(sleeper(), "sleeper")
    spawn(recursion(400), "deep-recursion")
    spawn(timeout_holder(), "timeout-holder")
    spawn(endless_sleeper(), "endless-sleeper")
    spawn(endless_timeout(), "endless-timeout")

    jobs: asyncio.Queue[int] = asyncio.Queue()
    spawn(queue_getter(jobs), "queue-getter")
    backlog: asyncio.Queue[int] = asyncio.Queue()
    backlog.put_nowait(1)
    spawn(queue_joiner(backlog), "queue-joiner")
    results: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    results.put_nowait(1)
    spawn(queue_putter(results), "queue-putter")

    lock = asyncio.Lock()
    await lock.acquire()
    spawn(lock_waiter(lock), "lock-waiter")
    spawn(sem_waiter(asyncio.Semaphore(0)), "sem-waiter")
    bsem = asyncio.BoundedSemaphore(1)
    await bsem.acquire()
    spawn(bsem_waiter(bsem), "bsem-waiter")
    spawn(cond_waiter(asyncio.Condition()), "cond-waiter")
    spawn(event_waiter(asyncio.Event()), "event-waiter")
    spawn(barrier_waiter(asyncio.Barrier(3)), "barrier-waiter")

    # A TCP server on 127.0.0.1 whose handlers never read nor write.
    hold = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hold.wait()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    spawn(serve_forever(server), "server")
    reader, _quiet_writer = await asyncio.open_connection("127.0.0.1", port)
    spawn(stream_reader(reader), "stream-reader")
    _unread, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.set_write_buffer_limits(high=64 * 1024)
    chunk = b"x" * (1024 * 1024)
    for _ in range(64):  # far more than both kernel buffers take: the writer must pause
        writer.write(chunk)
        if writer.transport.get_write_buffer_size() > 8 * 1024 * 1024:
            break
    spawn(stream_drainer(writer), "stream-drainer")

    spawn(tls_client(port), "tls-client")

    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)
    spawn(sock_recv(left), "sock-recv")

    spawn(executor(), "executor")
    spawn(to_thread(), "to-thread")

    proc = await asyncio.create_subprocess_exec("sleep", "60")
    spawn(subprocess_waiter(proc), "subprocess-waiter")

    spawn(bare_future(loop.create_future()), "bare-future")
    spawn(custom_awaitable(TicketWindow(loop)), "custom-awaitable")

    shielded = spawn(forever(), "shielded")
    spawn(shield_parent(shielded), "shield-parent")
    spawn(shielded_future(loop.create_future()), "shielded-future")
    spawn(wait_parent(), "wait-parent")
    spawn(wait_for_parent(), "wait-for-parent")
    spawn(as_completed_parent(), "as-completed-parent")
    spawn(asyncgen_consumer(), "asyncgen-consumer")

    both_started = asyncio.Event()
    cycle["cycle-b"] = spawn(cycle_member("cycle-a", both_started), "cycle-b")
    cycle["cycle-a"] = spawn(cycle_member("cycle-b", both_started), "cycle-a")
    both_started.set()

    def cleanup() -> None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        release_threads.set()
        os._exit(0)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, cleanup)

    await settle(lambda: all(waiting(task) for task in started), "every task suspended")
    await settle(lambda: writer.transport.get_write_buffer_size() > 0, "writer paused")

    write_ready(ready_path, {"pid": os.getpid(), "port": port, "child_pid": proc.pid})
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
