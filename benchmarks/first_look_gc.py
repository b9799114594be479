"""What the agent's first look at many tasks leaves for the host's garbage collector.

Run: python benchmarks/first_look_gc.py [--tasks 100000] [--rounds 3] [--against CHECKOUT]
                                        [--look-only]

Each round, in a fresh process: the host program of `host_cost.py` (targets/population.py's
mix, one task in a hundred waking), the agent installed before its tasks (as `taskscope run`
does), a full `gc.collect()` once the tasks wait, then the agent's first look (a compact
snapshot built and encoded on a thread of its own, as a `taskscope dump` asks for it), then
the host's own work of about two seconds (its wakers, plus the allocations a server makes:
short-lived containers, enough for every young generation's threshold many times over).
Printed: the objects the collector tracks that the look added and kept, per task, by type; the
full (oldest generation) collections from the look's start to the end of that work, the
longest of them and when each came. With --against, that checkout's agent (on PYTHONPATH) in
turns with this one. With --look-only, the snapshot is not encoded: to measure a copy of the
agent whose records the encoder cannot read (`benchmarks/experiments/`).
Without an agent, the same program sets off no full collection in that time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _churn(seconds: float) -> None:
    """Short-lived containers, as a busy server's requests make them: young collections
    (and the oldest generation's check) run as they would."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(2000):
            [{}]  # noqa: B018


async def _host(size: int, agent: str, look_only: bool) -> dict[str, Any]:
    sys.path.insert(0, str(HERE / "targets"))
    from population import population

    if agent != "none":
        import taskscope

        taskscope.install()
    tasks = await population(size, owner_every=1000, waker_every=100, yield_every=5000, settle=0.1)
    gc.collect()
    before = gc.get_objects()  # held: no address is reused while the look runs
    held = len(before)
    before_ids = {id(obj) for obj in before}
    full: list[float] = []
    full_when: list[float] = []  # seconds from the look's start
    look_began = [time.perf_counter()]
    started_at = [0.0]

    def log(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started_at[0] = time.perf_counter()
        elif info.get("generation") == 2:
            full.append(time.perf_counter() - started_at[0])
            full_when.append(time.perf_counter() - look_began[0])

    gc.callbacks.append(log)
    look_seconds = 0.0
    if agent != "none":
        from taskscope.agent import _state
        from taskscope.agent.introspect import SnapshotBuilder
        from taskscope.protocol import CompactEncoder

        server = _state["server"]

        def look() -> None:
            snapshot = SnapshotBuilder(server.tracker).build_raw(True)
            if not look_only:
                CompactEncoder(server.tables).encode({"type": "snapshot", "snapshot": snapshot})

        began = look_began[0] = time.perf_counter()
        thread = threading.Thread(target=look)
        thread.start()
        await asyncio.to_thread(thread.join)
        look_seconds = time.perf_counter() - began
    # The host goes on: its wakers wake, its requests allocate.
    for _ in range(20):
        _churn(0.05)
        await asyncio.sleep(0.05)
    gc.callbacks.remove(log)
    after = gc.get_objects()
    added = collections.Counter(
        type(obj).__qualname__ for obj in after if id(obj) not in before_ids
    )
    del before, after
    return {
        "tasks": len(tasks),
        "added": sum(added.values()) / len(tasks),
        "by_type": {name: count / len(tasks) for name, count in added.most_common() if count > 1},
        "held": held / len(tasks),
        "full": full,
        "full_when": full_when,
        "look_s": look_seconds,
        "python": sys.version.split()[0],
    }


def _round(
    python: str, checkout: str | None, size: int, agent: str, look_only: bool
) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = checkout if checkout is not None else str(REPO)
    output = subprocess.run(
        [python, __file__, "--child", str(size), agent, "look-only" if look_only else "encode"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        look_only = len(sys.argv) > 4 and sys.argv[4] == "look-only"
        result = asyncio.run(_host(int(sys.argv[2]), sys.argv[3], look_only))
        print(json.dumps(result))
        sys.stdout.flush()
        os._exit(0)  # 100,000 tasks need not be cancelled one by one
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--against", help="another checkout, its agent in turns with this one")
    parser.add_argument(
        "--look-only",
        action="store_true",
        help="the look alone, not encoded (an agent whose records no encoder reads)",
    )
    args = parser.parse_args()
    configs: list[tuple[str, str | None, str]] = [
        ("no agent", None, "none"),
        ("this", None, "agent"),
    ]
    if args.against:
        configs.append((f"agent of {args.against}", args.against, "agent"))
    for number in range(args.rounds):
        for label, checkout, agent in configs:
            result = _round(args.python, checkout, args.tasks, agent, args.look_only)
            longest = max(result["full"], default=0.0)
            types = ", ".join(
                f"{name} {per:.2f}" for name, per in list(result["by_type"].items())[:5]
            )
            print(
                f"round {number + 1} {label} (Python {result['python']}, {result['tasks']} tasks):"
                f" kept {result['added']:.2f} tracked objects per task ({types});"
                f" {len(result['full'])} full collections (longest {longest * 1e3:.0f} ms);"
                f" the program held {result['held']:.2f} per task (a quarter:"
                f" {result['held'] / 4:.2f});"
                f" look {result['look_s']:.2f} s"
                + "".join(
                    f"; a full collection {when:.2f} s after it began"
                    for when in result["full_when"]
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
