"""How big a recording gets and how fast it reads back (issue 13's goals): a recording of
10,000 tasks for 10 minutes under 50 MB; the state at any time read back in under 1 s.

Run: python benchmarks/recording.py [--tasks 10000] [--churn 50] [--seconds 600]
     [--interval 1.0] [--reads 20] [--python PATH] [--keep FILE | --read FILE]

A target (benchmarks/targets/recording_target.py, started with the agent installed, as
`taskscope run` does) holds --tasks long-lived tasks and starts --churn short requests a
second, each going through a sleep and a queue round trip, so the recording holds tasks that
appear, move, finish and leave. `taskscope record PID -o FILE --duration S --interval I` records
it as a user would. Then: the file's size (and, when --seconds is under 600, the size of ten
minutes at the same rate, marked as projected); the time to open it (read its index), and to
read the state at --reads random times and at its end (`snapshot_at`), lowest, median and
highest; `taskscope dump --from FILE --at T` end to end at the slowest of those times; and
the replay's timeline read (every update's pending count and stalls, the lints at keyframes and
the end only), next to the lints of one state, which every update would cost.
--keep FILE keeps the recording; --read FILE measures an existing one without recording.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "benchmarks" / "targets" / "recording_target.py"
sys.path.insert(0, str(REPO))

from taskscope.recording import KEYFRAME, Recording, open_recording  # noqa: E402

GOAL_MB_PER_10_MIN = 50.0
GOAL_READ_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--churn", type=int, default=50, help="short requests started a second")
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to record")
    parser.add_argument("--interval", type=float, default=1.0, help="record's --interval")
    parser.add_argument("--reads", type=int, default=20, help="random times read back")
    parser.add_argument("--python", default=sys.executable, help="the target's interpreter")
    parser.add_argument("--keep", default=None, help="write the recording here and keep it")
    parser.add_argument("--read", default=None, help="measure this recording; record nothing")
    args = parser.parse_args()
    if args.read:
        return measure(Path(args.read), args, recorded=None)

    env = dict(os.environ, PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory(prefix="taskscope-rec-bench-") as workdir:
        ready = Path(workdir) / "ready"
        path = Path(args.keep) if args.keep else Path(workdir) / "run.tsrec"
        target = subprocess.Popen(
            [args.python, str(TARGET), str(args.tasks), str(args.churn), str(ready)], env=env
        )
        try:
            deadline = time.monotonic() + 120
            while not (ready.exists() and ready.read_text()):
                if target.poll() is not None or time.monotonic() > deadline:
                    print("the target did not start", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            print(
                f"target pid {target.pid}: {args.tasks} tasks, {args.churn} requests/s; "
                f"recording {args.seconds:g} s at --interval {args.interval:g}",
                flush=True,
            )
            started = time.monotonic()
            subprocess.run(
                [
                    sys.executable, "-m", "taskscope", "record", str(target.pid),
                    "-o", str(path), "--duration", str(args.seconds),
                    "--interval", str(args.interval),
                ],
                env=env,
                check=True,
            )  # fmt: skip
            recorded = time.monotonic() - started
        finally:
            target.kill()
            target.wait()
        return measure(path, args, recorded)


def measure(path: Path, args: argparse.Namespace, recorded: float | None) -> int:
    """Print the recording's size against the goal, and how fast it reads back."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    size = path.stat().st_size
    opened = time.perf_counter()
    recording = open_recording(path)
    open_s = time.perf_counter() - opened
    span = recording.end - recording.start
    messages = len(recording.chunks)
    mb = size / 1e6
    wall = f" ({recorded:.0f} s wall)" if recorded is not None else ""
    tasks_now = len(recording.snapshot_at()["tasks"])
    print(
        f"\nrecording: {mb:.1f} MB, {messages} messages over {span:.0f} s{wall}, "
        f"{tasks_now} tasks at its end"
    )
    if span >= 599:
        verdict = "met" if mb <= GOAL_MB_PER_10_MIN else "MISSED"
        print(
            f"  10 minutes of {args.tasks} tasks: {mb:.1f} MB "
            f"(goal <= {GOAL_MB_PER_10_MIN:g}): {verdict}"
        )
    elif span > 0:
        projected = mb * 600 / span
        verdict = "met" if projected <= GOAL_MB_PER_10_MIN else "MISSED"
        print(
            f"  10 minutes projected from {span:.0f} s: {projected:.1f} MB "
            f"(goal <= {GOAL_MB_PER_10_MIN:g}): {verdict} (projected)"
        )

    rng = random.Random(13)
    times = [rng.uniform(recording.start, recording.end) for _ in range(args.reads)]
    times.append(recording.end)
    timings = []
    for at in times:
        begun = time.perf_counter()
        snapshot = recording.snapshot_at(at)
        timings.append((time.perf_counter() - begun, at, len(snapshot["tasks"])))
    seconds = sorted(t for t, _, _ in timings)
    worst, worst_at, worst_tasks = max(timings)
    print(f"  open (index of {messages} chunks): {open_s * 1000:.0f} ms")
    verdict = "met" if worst + open_s <= GOAL_READ_S else "MISSED"
    print(
        f"  state at a time ({len(times)} reads): lowest {seconds[0] * 1000:.0f} ms, median "
        f"{statistics.median(seconds) * 1000:.0f} ms, highest {worst * 1000:.0f} ms "
        f"({worst_tasks} tasks); with the open: {(worst + open_s) * 1000:.0f} ms "
        f"(goal <= {GOAL_READ_S * 1000:.0f} ms): {verdict}"
    )
    at_arg = f"{worst_at - recording.start:.3f}"
    begun = time.perf_counter()
    dumped = subprocess.run(
        [sys.executable, "-m", "taskscope", "dump", "--from", str(path), "--at", at_arg],
        env=env,
        check=True,
        capture_output=True,
    )
    whole = time.perf_counter() - begun
    print(
        f"  `taskscope dump --from FILE --at {at_arg}` end to end: {whole:.2f} s "
        f"({len(dumped.stdout) / 1e6:.1f} MB of JSON, interpreter start included)"
    )
    measure_timeline(recording)
    return 0


def measure_timeline(recording: Recording) -> None:
    """What `taskscope replay` reads for its timeline (on a worker thread, the dashboard open
    meanwhile), and why it lints a few moments only."""
    from taskscope.lints import find_warnings, warning_records
    from taskscope.model import TaskModel
    from taskscope.ui.replay import read_timeline

    begun = time.perf_counter()
    facts = read_timeline(recording)
    read_s = time.perf_counter() - begun
    samples = sum(chunk.flags == KEYFRAME for chunk in recording.chunks) + 1
    state = recording.snapshot_at(recording.end)
    begun = time.perf_counter()
    find_warnings(TaskModel.from_snapshot(warning_records(state)))  # type: ignore[arg-type]
    one_s = time.perf_counter() - begun
    print(
        f"  replay's timeline read: {read_s:.2f} s ({len(facts.stalls)} stalls; lints at "
        f"{samples} moments, {one_s * 1000:.0f} ms each; at every update they would add "
        f"{one_s * len(recording.chunks):.1f} s)"
    )


if __name__ == "__main__":
    sys.exit(main())
