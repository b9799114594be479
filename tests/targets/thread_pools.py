"""Calls queued in thread pools whose threads are all busy: the loop's default pool has 2
threads (`pool_0`, `pool_1`) and four tasks `threaded-0` to `threaded-3` each call
`asyncio.to_thread`, so two run and two wait in the pool's queue, and `resolver` (a
`loop.getaddrinfo`, which runs in that pool) waits behind them; a pool of 1 thread
(`other_0`) gets two calls through `loop.run_in_executor` from `exec-0` and `exec-1`. A
`release-PID` file releases every call; once all seven have returned the program notes `all
calls done`, and runs until stopped."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from target_kit import WORKDIR, note, signal_ready, until_stopped


def wait_for_release(release: threading.Event) -> None:
    release.wait()  # a blocking call with no timeout


async def threaded(release: threading.Event) -> None:
    await asyncio.to_thread(wait_for_release, release)


async def in_pool(pool: ThreadPoolExecutor, release: threading.Event) -> None:
    await asyncio.get_running_loop().run_in_executor(pool, wait_for_release, release)


async def resolver() -> None:
    try:
        await asyncio.get_running_loop().getaddrinfo("localhost", 80)
    except OSError:  # a machine that cannot resolve it: the call ran all the same
        pass


async def releaser(release: threading.Event) -> None:
    cue = WORKDIR / f"release-{os.getpid()}"
    while not cue.exists():
        await asyncio.sleep(0.02)
    release.set()


async def main() -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(2, thread_name_prefix="pool"))
    other = ThreadPoolExecutor(1, thread_name_prefix="other")
    release = threading.Event()
    calls = [asyncio.create_task(threaded(release), name=f"threaded-{n}") for n in range(4)]
    calls.append(asyncio.create_task(resolver(), name="resolver"))
    calls.append(asyncio.create_task(in_pool(other, release), name="exec-0"))
    await asyncio.sleep(0.05)  # exec-0 first: it is the one running
    calls.append(asyncio.create_task(in_pool(other, release), name="exec-1"))
    releasing = asyncio.create_task(releaser(release), name="releaser")
    await asyncio.sleep(0.2)
    signal_ready()
    await asyncio.gather(*calls)
    await releasing
    note("all calls done")
    await until_stopped()


asyncio.run(main())
