"""How long reading the task registry holds the GIL, while the host's loop waits for it.

Run: python benchmarks/registry_read.py [--sizes 10000,100000] [--repeat 5]

On 3.14+ the registry lives in C and `asyncio.all_tasks(loop)` reads it in one call: the GIL
is held from its start to its end. On 3.11-3.13 it is a `WeakSet`, whose set of references the
agent copies in one C call and then reads in Python. In a fresh process per size, with that
many pending tasks on a running loop, this times from another thread (as the agent's look
does): the whole read (`all_tasks`), and the agent's own read between whole reads on 3.14+
(`pending_tasks` once it has noted every task), with the longest stretch the loop thread
waited for the GIL meanwhile (a probe on the loop timing 1 ms sleeps). Best and median of
--repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def child(size: int, repeat: int) -> None:
    """One process: `size` pending tasks, the agent installed, the reads timed."""
    from taskscope import agent
    from taskscope.agent.tracker import pending_tasks

    async def main() -> dict[str, object]:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        tasks = [asyncio.create_task(event.wait()) for _ in range(size)]
        await asyncio.sleep(0.2)
        tracker = agent._state["tracker"]
        pending_tasks(tracker)  # the first look: a whole read
        late: list[float] = []
        stop = False

        async def probe() -> None:
            while not stop:
                started = time.perf_counter()
                await asyncio.sleep(0.001)
                late.append(time.perf_counter() - started - 0.001)

        prober = asyncio.create_task(probe())
        figures: dict[str, object] = {}
        rounds: dict[str, list[tuple[float, float]]] = {"all_tasks": [], "noted": []}

        def reads() -> None:
            for _ in range(repeat):
                for name, read in (
                    ("all_tasks", lambda: asyncio.all_tasks(loop)),
                    ("noted", lambda: pending_tasks(tracker)),
                ):
                    time.sleep(0.05)
                    del late[:]
                    started = time.perf_counter()
                    found = read()
                    took = time.perf_counter() - started
                    time.sleep(0.01)
                    assert len(found) >= size
                    rounds[name].append((took, max(late, default=0.0)))

        await asyncio.to_thread(reads)  # another thread, as the agent's
        figures.update(rounds)
        stop = True
        await prober
        event.set()
        await asyncio.gather(*tasks)
        return dict(figures)

    agent.install()
    print(json.dumps(asyncio.run(main())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.repeat)
        return
    print(f"Python {sys.version.split()[0]}; the read from another thread, and the longest")
    print("the loop thread waited meanwhile (best / median of the rounds), in ms")
    for size in (int(text) for text in args.sizes.split(",")):
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(size), "--repeat", str(args.repeat)],
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        for name, label in (
            ("all_tasks", "asyncio.all_tasks(loop), the whole read"),
            ("noted", "the agent's read (3.14+: its noted tasks)"),
        ):
            took = sorted(value[0] * 1000 for value in figures[name])
            waited = sorted(value[1] * 1000 for value in figures[name])
            print(
                f"  {size:>7,} tasks  {label:<44} {took[0]:6.1f} / {statistics.median(took):6.1f}"
                f"   loop waited {waited[0]:5.1f} / {statistics.median(waited):5.1f}"
            )


if __name__ == "__main__":
    main()
