"""Keeping the garbage collector's full passes short while the dashboard runs.

The dashboard's picture (task records, tree nodes, drawn rows) is long-lived: a full pass of
CPython's collector walks all of it (60-130 ms at 10,000 tasks here) and a key waits meanwhile.
After a full snapshot the picture is frozen (`gc.freeze()`, by the main screen), and what
survives each later full pass (the records and nodes that updates made since) is frozen too:
the next full pass walks only what came after. Frozen objects are still freed by reference
counting when dropped; a reference cycle among them that became garbage (a removed tree node and
its parent link) would stay, so every `THAW_EVERY` full passes everything is given back to the
collector instead, and the next full pass, a long one, frees those cycles: what a long session
leaks is bounded by about a minute's worth of them. `release()` gives everything back when the
dashboard ends. Python 3.14's collector is incremental, with
pauses of its own measure: it is left alone there.

A key that moved a cursor is on screen a frame later; the collector waits meanwhile
(`hold_for_key`, `resume`): a pass then (young ones 1-25 ms here, full ones 20-60 ms on a
loaded machine) would delay the key's picture by as much. It runs at the next allocation
after: nothing is skipped, only moved after the key.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

#: Whether survivors of full passes are frozen on this Python.
FREEZES = sys.version_info < (3, 14)
#: Every this many full passes (about one a second while updates come), the frozen objects go
#: back to the collector, so the next full pass frees the reference cycles among them.
THAW_EVERY = 60

_passes = 0
#: Whether the collector is held off by `hold_for_key` (and so turned on again by `resume`).
_held = False


def _after_a_pass(phase: str, info: dict[str, Any]) -> None:
    global _passes
    if phase != "stop" or info.get("generation") != 2:
        return
    _passes += 1
    if _passes % THAW_EVERY == 0:
        gc.unfreeze()  # the next full pass walks everything once, and frees dead cycles
    else:
        gc.freeze()  # the younger generations were merged into this pass: all survived it


def keep() -> None:
    """Freeze the picture now, and the survivors of each full pass from now on."""
    gc.freeze()
    if FREEZES and _after_a_pass not in gc.callbacks:
        gc.callbacks.append(_after_a_pass)


def hold_for_key() -> None:
    """A key's picture is due: no collector pass until `resume` (unless it is off anyway)."""
    global _held
    if not _held and gc.isenabled():
        gc.disable()
        _held = True


def resume() -> None:
    """The key's picture is on screen: the collector runs again."""
    global _held
    if _held:
        _held = False
        gc.enable()


def release() -> None:
    """Give every frozen object back to the collector (the dashboard ends)."""
    resume()
    if _after_a_pass in gc.callbacks:
        gc.callbacks.remove(_after_a_pass)
    gc.unfreeze()
