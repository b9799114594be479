"""How a task hangs under its parent in a task tree, and the glyphs that tell it: awaited by
the parent (an `await`, a `gather`, a `TaskGroup`), or only created by it, nobody awaiting it
(fire and forget: a leak, or a background job). Shared by `taskscope tree` and the dashboard,
so that both draw the two relations, and explain them, the same way.
"""

from __future__ import annotations

from typing import Final, Literal

from taskscope.model import TaskInfo

Relation = Literal["awaited", "created"]
AWAITED: Final = "awaited"
CREATED: Final = "created"

#: The line before a child's name: a solid branch when its parent awaits it, a dashed one
#: when the parent only created it. Each is three cells, like the guides above it.
BRANCH: Final[dict[Relation, str]] = {AWAITED: "├─ ", CREATED: "├┄ "}
LAST_BRANCH: Final[dict[Relation, str]] = {AWAITED: "└─ ", CREATED: "└┄ "}
#: Below an ancestor: more siblings follow (a guide line), or none (blank).
GUIDE: Final = "│  "
NO_GUIDE: Final = "   "
#: The dashed stroke that marks "created, not awaited" in a branch.
CREATED_STROKE: Final = "┄"
AWAITED_STROKE: Final = "─"

LEGEND: Final = "├─ awaited by   ├┄ created by, nobody awaits it"


def relation(task: TaskInfo, parent_id: str) -> Relation:
    """How `task` hangs under `parent_id`: created when it is pending and its parent (nor
    anyone) does not await it. A finished task has no waiters left; what the dashed branch
    is for is the pending task nobody will collect, so a finished one hangs on a solid one."""
    if task.finished or parent_id in task.awaited_by:
        return AWAITED
    return CREATED


def branch(kind: Relation, is_last: bool) -> str:
    return LAST_BRANCH[kind] if is_last else BRANCH[kind]
