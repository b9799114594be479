"""`taskscope demo`: start the bundled example service with the agent, open the dashboard on
it, and stop the service when the dashboard closes.

The service is `taskscope/examples_data/demo_service.py` (inside the package so an installed
taskscope finds it; `examples/demo_service.py` in a checkout is the same file).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from taskscope.protocol import socket_path

DEMO_PROGRAM = Path(__file__).parent / "examples_data" / "demo_service.py"
READY_TIMEOUT = 20.0


def start_demo_service(
    program: Path = DEMO_PROGRAM, timeout: float = READY_TIMEOUT
) -> subprocess.Popen[bytes]:
    """Start the service under the agent and wait (polling, with a deadline) until its agent
    socket exists. Its output goes nowhere: the dashboard owns the terminal."""
    process = subprocess.Popen(
        [sys.executable, "-m", "taskscope.agent.launch", str(program)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Same process group on purpose: if the terminal goes away (SIGHUP), the service goes
        # too. Ctrl+C in the dashboard is a key press (raw mode), not a signal to the group.
    )
    path = socket_path(process.pid)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if process.poll() is not None:
            raise RuntimeError(f"the demo service exited with status {process.returncode}")
        if time.monotonic() > deadline:
            stop_demo_service(process)
            raise RuntimeError(f"the demo service's agent did not start within {timeout:.0f} s")
        time.sleep(0.05)
    return process


def stop_demo_service(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_demo() -> int:
    """Run the demo: the README's first command."""
    from taskscope.sources.live import LiveSource
    from taskscope.ui.app import run_dashboard

    try:
        process = start_demo_service()
    except RuntimeError as error:
        print(f"taskscope: {error}", file=sys.stderr)
        return 1
    try:
        return run_dashboard(LiveSource(process.pid))
    finally:
        stop_demo_service(process)
