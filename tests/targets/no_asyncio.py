"""A Python program that never uses asyncio: it waits for its stop file, polling with
time.sleep, and on a file `report-PID` notes its threads and the taskscope modules loaded
(target_kit's ready and stop files, without importing it: target_kit imports asyncio)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

workdir = Path(sys.argv[1])
pid = os.getpid()
(workdir / f"ready-{pid}").write_text("ready")
while not (workdir / f"stop-{pid}").exists():
    report = workdir / f"report-{pid}"
    if report.exists():
        report.unlink()
        threads = sorted(thread.name for thread in threading.enumerate())
        modules = sorted(name for name in sys.modules if name.startswith("taskscope"))
        with open(workdir / f"notes-{pid}", "a") as notes:
            notes.write(f"report threads={threads} modules={modules}\n")
    time.sleep(0.02)
print("finished")
