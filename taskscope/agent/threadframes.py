"""The top frame of each thread, for the agent's searches of other threads' stacks (a trio
run's frame, an executor's work item), without the reference cycle that
`sys._current_frames()` makes when its caller keeps the calling thread's own entry: that entry
is the caller's executing frame, and a local bound to it keeps that frame, every frame below
it and all their locals (a whole look: its snapshot, its lists) alive until the collector's
next full pass."""

from __future__ import annotations

import sys
import threading
from types import FrameType


def thread_tops() -> dict[int, FrameType]:
    """Thread id -> its innermost frame; for the calling thread, its caller's caller (the
    frames the caller searches are below its own)."""
    tops = sys._current_frames()
    own = threading.get_ident()
    try:
        below = sys._getframe(2)
    except ValueError:  # called from a thread's first frame: nothing below it
        tops.pop(own, None)
    else:
        tops[own] = below
    return tops
