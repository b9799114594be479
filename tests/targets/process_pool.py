"""An asyncio program with a process pool (fork start method, the default on Linux before
3.14): `job` runs in the pool's worker until the stop file appears. The worker is a fork of
the program taken while its loop ran, and holds a copy of that loop and its tasks, which
never runs. Signals ready once the worker runs the job (`job-PID` names the worker)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import time

from target_kit import WORKDIR, signal_ready, stop_requested, until_stopped


def job(parent: int) -> None:
    (WORKDIR / f"job-{os.getpid()}").write_text("running")
    while not (WORKDIR / f"stop-{parent}").exists():
        if os.getppid() != parent:  # the program was killed: the worker would wait for work
            os._exit(0)  # forever, holding the program's output pipes
        time.sleep(0.05)


async def main() -> None:
    pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    loop = asyncio.get_running_loop()
    running = asyncio.ensure_future(loop.run_in_executor(pool, job, os.getpid()))
    while not list(WORKDIR.glob("job-*")):
        await asyncio.sleep(0.02)
    signal_ready()
    await until_stopped()
    await running
    pool.shutdown()
    assert stop_requested()


asyncio.run(main())
