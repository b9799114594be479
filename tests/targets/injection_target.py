"""A real asyncio program for the injection tests.

    python injection_target.py MODE READY_FILE

MODE is one of
  idle     the loop has no timers and waits for an Event forever (parked in epoll_wait)
  busy     the loop constantly runs short Python callbacks
  sleep    a coroutine blocks the loop in time.sleep(30), timers due meanwhile
  spin     a coroutine blocks the loop in a pure-Python loop that makes no calls
  lock     the main thread waits on a threading.Event (a futex) while a thread runs the loop
  threads  three threads each run their own idle loop, and the main thread runs one too
  hash     a coroutine blocks the loop in one long C call (pbkdf2, ≥5 s, GIL released)
  gil      the main loop is idle while a thread holds the GIL in one C call (sum, ~4 s)
  no-wx    idle, in a process that may map no memory both writable and executable (the
           prctl of systemd's MemoryDenyWriteExecute=, Linux 6.3+)

It writes "ready" to READY_FILE once it is in that state, and finishes cleanly on SIGUSR1.  Its
stdout is the same with or without anything injected into it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import threading
import time


class Finish(Exception):
    pass


def ready(path: str | None) -> None:
    if path is None:
        return
    # Made whole under another name, then renamed: the test acts the moment the name appears.
    with open(path + ".part", "w") as file:
        file.write("ready")
    os.replace(path + ".part", path)


async def idle(ready_file: str | None) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stop.set)
    ready(ready_file)
    await stop.wait()


async def busy(ready_file: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, stop.set)
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        if count == 1000:
            ready(ready_file)
        if not stop.is_set():
            loop.call_soon(tick)

    loop.call_soon(tick)
    await stop.wait()


def raise_finish(signum: int, frame: object) -> None:
    raise Finish


async def tick() -> None:
    while True:
        await asyncio.sleep(0.05)


async def sleep(ready_file: str) -> None:
    signal.signal(signal.SIGUSR1, raise_finish)
    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.1)
    asyncio.get_running_loop().call_later(0.2, sys.stdout.flush)  # a timer due in the block
    try:
        # Inside the try: the test's signal can come as soon as the ready file is there.
        ready(ready_file)
        time.sleep(30)
    except Finish:
        pass
    ticker.cancel()


stop_spinning = False


def request_stop(signum: int, frame: object) -> None:
    global stop_spinning
    stop_spinning = True


async def spin(ready_file: str) -> None:
    signal.signal(signal.SIGUSR1, request_stop)
    ready(ready_file)
    while not stop_spinning:
        pass


async def hashing(ready_file: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stop.set)
    # Calibrated on the fastest of a few short runs: a load spike during one of them must not
    # shorten the long call (it once ran under 1.5 s on a loaded CI machine).
    fastest = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        hashlib.pbkdf2_hmac("sha256", b"taskscope", b"salt", 20_000)
        fastest = min(fastest, time.perf_counter() - began)
    rounds = int(20_000 * 5.0 / fastest)
    ready(ready_file)
    hashlib.pbkdf2_hmac("sha256", b"taskscope", b"salt", rounds)
    await stop.wait()


def main_thread_in_epoll() -> bool:
    with open(f"/proc/self/task/{threading.main_thread().native_id}/syscall") as file:
        return file.read().split()[0] in ("232", "281")  # x86-64 epoll_wait, epoll_pwait


async def gil(ready_file: str) -> None:
    began = time.perf_counter()
    sum(range(1_000_000))
    count = int(1_000_000 * 4.0 / (time.perf_counter() - began))
    stopped = threading.Event()

    def hog() -> None:
        # Once the main loop is parked in epoll_wait, hold the GIL for one long C call.
        while not main_thread_in_epoll():
            time.sleep(0.01)
        ready(ready_file)
        sum(range(count))
        stopped.wait()

    thread = threading.Thread(target=hog, name="hog")
    thread.start()
    await idle(None)
    stopped.set()
    thread.join()


def lock(ready_file: str) -> None:
    done = threading.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="loop")
    thread.start()
    signal.signal(signal.SIGUSR1, lambda signum, frame: done.set())
    ready(ready_file)
    done.wait()
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


def threads(ready_file: str) -> None:
    loops: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    started = threading.Barrier(4)

    async def worker() -> None:
        event = asyncio.Event()
        loops.append((asyncio.get_running_loop(), event))
        started.wait()
        await event.wait()

    workers = [
        threading.Thread(target=asyncio.run, args=(worker(),), name=f"loop-{i}") for i in range(3)
    ]
    for thread in workers:
        thread.start()
    started.wait()

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stop.set)
        ready(ready_file)
        await stop.wait()
        for loop, event in loops:
            loop.call_soon_threadsafe(event.set)

    asyncio.run(main())
    for thread in workers:
        thread.join()


def deny_write_execute() -> None:
    """What systemd's MemoryDenyWriteExecute= does: no mapping writable and executable."""
    import ctypes

    pr_set_mdwe, pr_mdwe_refuse_exec_gain = 65, 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_mdwe, pr_mdwe_refuse_exec_gain, 0, 0, 0) != 0:
        raise SystemExit(f"PR_SET_MDWE failed (errno {ctypes.get_errno()})")


def main() -> None:
    mode, ready_file = sys.argv[1], sys.argv[2]
    print(f"{mode}: started", flush=True)
    if mode == "no-wx":
        deny_write_execute()
        mode = "idle"
    if mode in ("lock", "threads"):
        {"lock": lock, "threads": threads}[mode](ready_file)
    else:
        coroutines = {
            "idle": idle,
            "busy": busy,
            "sleep": sleep,
            "spin": spin,
            "hash": hashing,
            "gil": gil,
        }
        coroutine = coroutines[mode]
        asyncio.run(coroutine(ready_file))
    print(f"{sys.argv[1]}: finished", flush=True)


if __name__ == "__main__":
    main()
