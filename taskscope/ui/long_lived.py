"""Keeping the garbage collector's full passes short while the dashboard runs.

The dashboard's picture (task records, tree nodes, drawn rows) is long-lived: a full pass of
CPython's collector walks all of it (60-130 ms at 10,000 tasks here) and a key waits meanwhile.
After a full snapshot the picture is frozen (`gc.freeze()`, by the main screen), and what
survives each later full pass (the records and nodes that updates made since) is frozen too:
the next full pass walks only what came after. Frozen objects are still freed by reference
counting when dropped; only a reference cycle among them that became garbage would stay until
the dashboard ends (`release()` gives them back). Python 3.14's collector is incremental, with
pauses of its own measure: it is left alone there.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

#: Whether survivors of full passes are frozen on this Python.
FREEZES = sys.version_info < (3, 14)


def _after_a_pass(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()  # the younger generations were merged into this pass: all survived it


def keep() -> None:
    """Freeze the picture now, and the survivors of each full pass from now on."""
    gc.freeze()
    if FREEZES and _after_a_pass not in gc.callbacks:
        gc.callbacks.append(_after_a_pass)


def release() -> None:
    """Give every frozen object back to the collector (the dashboard ends)."""
    if _after_a_pass in gc.callbacks:
        gc.callbacks.remove(_after_a_pass)
    gc.unfreeze()
