"""Long loops on the agent's thread, cut into slices: the host's loop thread gets the GIL back
within `SLICE_SECONDS` rather than at the interpreter's next forced switch (5 ms), however many
tasks a look walks."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Final, TypeVar

#: How long the agent's thread keeps the GIL before it gives it away (`time.sleep(0)`) while
#: it looks at or encodes many tasks: the process-wide switch interval is the host's to set,
#: not ours.
SLICE_SECONDS: Final = 0.001

Item = TypeVar("Item")

#: When the next give-way is due: a millisecond after the last one, whichever loop made it, so
#: that a run of short loops (each under a slice) gives the GIL away as one long loop would.
_due = [0.0]


def start_slicing() -> None:
    """A piece of work begins (a look, an encoding): its first slice is whole. Without this,
    the first loop of a look would give the GIL away at once (the last give-way was a look
    ago), and on a loaded machine that can cost a small look milliseconds of waiting."""
    _due[0] = time.perf_counter() + SLICE_SECONDS


def give_way_due() -> float:
    """When the next give-way is due (`time.perf_counter()`), for a loop that reads the clock
    itself; `give_way` moves it."""
    return _due[0]


def give_way() -> None:
    """Let a thread waiting for the GIL (the host's loop) have it. `time.sleep(0)` drops the
    GIL and may take it back before that thread has woken; a real sleep (20 us) was tried at
    100,000 tasks on 3.15 and made the loop's pauses no shorter (p99 3.0-3.6 ms against
    1.7-1.8, the longest alike): once the loop has the GIL, the agent's thread waits for it in
    turn, and its forced switch comes back sooner."""
    time.sleep(0)
    _due[0] = time.perf_counter() + SLICE_SECONDS


def sliced(items: Iterable[Item], stride: int = 64) -> Iterator[Item]:
    """`items`, giving the GIL away whenever `SLICE_SECONDS` have gone since the last time
    (in this loop or another); the clock is read every `stride` items (a power of two). For
    loops whose body is long (a few microseconds or more) or that run once a scan; the loops
    every look makes over every task use `pieces`, and the hottest does the same inline."""
    mask = stride - 1
    clock = time.perf_counter
    for count, item in enumerate(items):
        if not count & mask and clock() >= _due[0]:
            give_way()
        yield item


def pieces(items: Iterable[Item], size: int = 256) -> Iterator[list[Item]]:
    """`items` in lists of `size`, giving the GIL away before a piece whenever `SLICE_SECONDS`
    have gone since the last time (in this loop or another). For the loops of every look over
    every task: `for piece in pieces(tasks): for task in piece: ...` costs a few ns a task,
    where `sliced`'s generator costs 40 (4 ms a pass at 100,000 tasks, 3.12)."""
    iterator = iter(items)
    clock = time.perf_counter
    while piece := list(islice(iterator, size)):
        if clock() >= _due[0]:
            give_way()
        yield piece


def clear_sliced(items: list[Any] | dict[Any, Any], piece: int = 4096) -> None:
    """`items.clear()`, a piece at a time, giving the GIL away as `sliced` does: dropping
    100,000 references to objects scattered in memory (or freeing 100,000 keys made for a look,
    such as `id()`s) is milliseconds of one C call."""
    clock = time.perf_counter
    while len(items) > piece:
        if isinstance(items, list):
            del items[-piece:]
        else:
            for key in list(islice(items, piece)):
                del items[key]
        if clock() >= _due[0]:
            give_way()
    items.clear()
