"""A trio program whose default thread limiter is exhausted: it has 3 tokens, and five tasks
`threaded-0` to `threaded-4` each run a blocking call with `trio.to_thread.run_sync`, so
three wait in worker threads and two wait for a token. A `release-PID` file releases the
calls; once all five have returned the program notes `all threaded done`, and runs until
stopped."""

from __future__ import annotations

import os
import threading

import trio
from target_kit import WORKDIR, note, signal_ready, stop_requested

THREADED = 5


def wait_for_release(release: threading.Event) -> None:
    release.wait()  # a blocking call with no timeout


async def threaded(release: threading.Event, done: list[str], name: str) -> None:
    await trio.to_thread.run_sync(wait_for_release, release)
    done.append(name)


async def releaser(release: threading.Event) -> None:
    cue = WORKDIR / f"release-{os.getpid()}"
    while not cue.exists() and not stop_requested():
        await trio.sleep(0.02)
    release.set()


async def main() -> None:
    trio.to_thread.current_default_thread_limiter().total_tokens = 3
    release = threading.Event()
    done: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(releaser, release, name="releaser")
        for number in range(THREADED):
            name = f"threaded-{number}"
            nursery.start_soon(threaded, release, done, name, name=name)
        await trio.sleep(0.2)
        signal_ready()
    note("all threaded done" if len(done) == THREADED else f"only {done} done")
    while not stop_requested():
        await trio.sleep(0.05)


trio.run(main)
