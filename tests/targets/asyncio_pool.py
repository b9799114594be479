"""A multiprocessing pool of two asyncio workers: each worker runs `asyncio.run` with a task
named `pool-job-PID` and writes `ready-worker-PID`, then waits until the parent's stop file
appears; the parent runs no asyncio itself and signals ready once both workers have.
`asyncio_pool.py WORKDIR [METHOD]`: the start method, `spawn` by default; with `forkserver`
(the default from 3.14 on Linux) the workers are the fork server's children."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
from pathlib import Path

WORKDIR = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()


async def pool_job(parent: int) -> None:
    while not (WORKDIR / f"stop-{parent}").exists():
        await asyncio.sleep(0.05)


async def worker_main(parent: int) -> None:
    job = asyncio.create_task(pool_job(parent), name=f"pool-job-{os.getpid()}")
    (WORKDIR / f"ready-worker-{os.getpid()}").write_text("ready")
    await job


def run_worker(parent: int) -> int:
    asyncio.run(worker_main(parent))
    return os.getpid()


def main() -> None:
    parent = os.getpid()
    method = sys.argv[2] if len(sys.argv) > 2 else "spawn"
    with multiprocessing.get_context(method).Pool(2) as pool:
        pending = pool.map_async(run_worker, [parent, parent], chunksize=1)
        while len(list(WORKDIR.glob("ready-worker-*"))) < 2:
            time.sleep(0.02)
        (WORKDIR / f"ready-{parent}").write_text("ready")
        pending.get(timeout=600)


if __name__ == "__main__":
    main()
