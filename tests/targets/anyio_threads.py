"""A program written with anyio (asyncio backend) whose default thread limiter is exhausted,
as a web app's is when every worker thread is stuck: the limiter has 3 tokens, and five tasks
`threaded-0` to `threaded-4` each run a blocking call with `to_thread.run_sync`, so three
wait in worker threads and two wait for a token. A `release-PID` file releases the calls;
once all five have returned the program notes `all threaded done`, and runs until stopped."""

from __future__ import annotations

import os
import threading

import anyio
from target_kit import WORKDIR, note, signal_ready, stop_requested

THREADED = 5


def wait_for_release(release: threading.Event) -> None:
    release.wait()  # a blocking call with no timeout


async def threaded(release: threading.Event, done: list[str], name: str) -> None:
    await anyio.to_thread.run_sync(wait_for_release, release)
    done.append(name)


async def releaser(release: threading.Event) -> None:
    cue = WORKDIR / f"release-{os.getpid()}"
    while not cue.exists() and not stop_requested():
        await anyio.sleep(0.02)
    release.set()


async def main() -> None:
    anyio.to_thread.current_default_thread_limiter().total_tokens = 3
    release = threading.Event()
    done: list[str] = []
    async with anyio.create_task_group() as group:
        group.start_soon(releaser, release, name="releaser")
        for number in range(THREADED):
            name = f"threaded-{number}"
            group.start_soon(threaded, release, done, name, name=name)
        await anyio.sleep(0.2)
        signal_ready()
    note("all threaded done" if len(done) == THREADED else f"only {done} done")
    while not stop_requested():
        await anyio.sleep(0.05)


anyio.run(main)
