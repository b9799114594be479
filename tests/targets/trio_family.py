"""A trio program whose `main`, each time a `spawn-PID` file appears in WORKDIR, spawns a
`parent-N` (N: 1, 2, ...) that spawns children: in a nursery of its own `lingerer-N` (sleeps
until the end) and `started-N` (through `nursery.start`, then sleeps until the end), and in an
inner nursery `returner-N` (returns 42), `doomed-N` (sleeps until cancelled) and `raiser-N`
(once `returner-N` has returned, fails two calls deep, in `check_setting` then
`lookup_setting`, with ValueError('boom') raised from a KeyError('boom'), which cancels
`doomed-N`); the parent catches the ValueError, notes `parent-N caught ValueError`, then
waits for its nursery.

At its start, before anything else, `main` spawns the tasks a program starts with: `watcher`
(below), `started-early` (through `nursery.start`, then sleeps until the end) and
`quick-early` (returns "early" at once).

`watcher` notes `instrument on` and `instrument off` as an instrument of taskscope's comes into
and leaves the run's instrument list (read from trio's private runner: the test's own check,
never how the agent works). The program writes `hello` at its start and `bye` at its end, on
stdout and on stderr, and nothing else: a test compares that output with and without the agent.

Arguments: WORKDIR [--install-before] (calls `taskscope.install()` before `trio.run`)."""

from __future__ import annotations

import os
import sys

import trio
from target_kit import WORKDIR, note, signal_ready, stop_requested


async def lingerer() -> None:
    await trio.sleep_forever()


async def started(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


async def quick() -> str:
    return "early"


async def returner(returned: trio.Event) -> int:
    returned.set()
    return 42


async def doomed() -> None:
    await trio.sleep_forever()


def lookup_setting(name: str) -> int:
    try:
        return {"depth": 3}[name]
    except KeyError as missing:
        raise ValueError(name) from missing


def check_setting(name: str) -> int:
    return lookup_setting(name) + 1


async def raiser(returned: trio.Event) -> None:
    await returned.wait()
    check_setting("boom")


async def parent(round: int) -> None:
    async with trio.open_nursery() as outer:
        outer.start_soon(lingerer, name=f"lingerer-{round}")
        await outer.start(started, name=f"started-{round}")
        try:
            async with trio.open_nursery() as inner:
                returned = trio.Event()
                inner.start_soon(returner, returned, name=f"returner-{round}")
                inner.start_soon(doomed, name=f"doomed-{round}")
                inner.start_soon(raiser, returned, name=f"raiser-{round}")
        except* ValueError:
            note(f"parent-{round} caught ValueError")


def taskscope_instruments() -> int:
    runner = trio.lowlevel.current_task()._runner
    return sum(
        1 for each in runner.instruments["_all"] if type(each).__module__.startswith("taskscope")
    )


async def watcher() -> None:
    on = False
    while True:
        now = taskscope_instruments() > 0
        if now != on:
            on = now
            note("instrument on" if on else "instrument off")
        await trio.sleep(0.02)


async def main() -> None:
    print("hello", flush=True)
    print("hello", file=sys.stderr, flush=True)
    cue = WORKDIR / f"spawn-{os.getpid()}"
    rounds = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watcher, name="watcher")
        await nursery.start(started, name="started-early")
        nursery.start_soon(quick, name="quick-early")
        signal_ready()
        while not stop_requested():
            if cue.exists():
                cue.unlink()
                rounds += 1
                nursery.start_soon(parent, rounds, name=f"parent-{rounds}")
            await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    print("bye", flush=True)
    print("bye", file=sys.stderr, flush=True)


if "--install-before" in sys.argv:
    import taskscope

    taskscope.install()
trio.run(main)
