"""Which parts of the screen are drawn together in one frame.

Textual draws a frame's changed regions as one rectangle around all of them: a key that moves
the tree's cursor (two rows on the left) and changes the detail pane (on the right) draws
every widget under that rectangle, the tree's 40 rows and all, line by line (about 10 ms of
CPU a frame at 160x45). `clusters` groups the changed regions so that each group's rectangle
is little more than the regions themselves; the main screen draws each group on its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.geometry import Region

#: A group's rectangle may hold this many cells more than its regions: rows side by side
#: are drawn together, far-apart parts of the screen are not.
SLACK_CELLS = 320


def clusters(regions: Iterable[Region]) -> list[list[Region]]:
    """`regions` in groups, top to bottom, each group's bounding rectangle close to the sum
    of its regions' areas (within `SLACK_CELLS`)."""
    groups: list[tuple[Region, int, list[Region]]] = []
    for region in sorted(regions, key=lambda region: (region.y, region.x)):
        for index, (box, area, members) in enumerate(groups):
            around = box.union(region)
            if around.area <= area + region.area + SLACK_CELLS:
                groups[index] = (around, area + region.area, [*members, region])
                break
        else:
            groups.append((region, region.area, [region]))
    return [members for _, _, members in groups]
