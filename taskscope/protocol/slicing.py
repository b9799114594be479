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


def sliced(items: Iterable[Item], stride: int = 64) -> Iterator[Item]:
    """`items`, giving the GIL away whenever `SLICE_SECONDS` have gone since the last time;
    the clock is read every `stride` items (a power of two). For loops of a look over every
    task whose body is cheap; the hottest loop does the same inline."""
    mask = stride - 1
    clock, give_way = time.perf_counter, time.sleep
    give_way_at = clock() + SLICE_SECONDS
    for count, item in enumerate(items):
        if not count & mask and clock() >= give_way_at:
            give_way(0)
            give_way_at = clock() + SLICE_SECONDS
        yield item


def clear_sliced(items: list[Any] | dict[Any, Any], piece: int = 4096) -> None:
    """`items.clear()`, a piece at a time, giving the GIL away as `sliced` does: dropping
    100,000 references to objects scattered in memory (or freeing 100,000 keys made for a look,
    such as `id()`s) is milliseconds of one C call."""
    clock, give_way = time.perf_counter, time.sleep
    give_way_at = clock() + SLICE_SECONDS
    while len(items) > piece:
        if isinstance(items, list):
            del items[-piece:]
        else:
            for key in list(islice(items, piece)):
                del items[key]
        if clock() >= give_way_at:
            give_way(0)
            give_way_at = clock() + SLICE_SECONDS
    items.clear()
