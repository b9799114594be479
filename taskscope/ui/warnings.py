"""The dashboard's warnings (`taskscope.lints`): found from a copy of the model on a worker
thread every few seconds, not on every update (the lints look at every task), and kept as
what the screen needs: the tasks to mark, each task's warnings in words, and the header's
summary."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from taskscope.lints import find_warnings
from taskscope.model import TaskModel
from taskscope.words import WARNING_NAMES, FindingFacts, finding_text, warnings_summary

#: Seconds between two looks for warnings (each walks every task, off the screen's thread).
WARNINGS_EVERY = 2.0


@dataclass(frozen=True, slots=True)
class Warnings:
    """What the screen shows of the warnings found in one look."""

    #: Every warning in words, worst first.
    texts: tuple[str, ...] = ()
    #: task id -> each warning about it: its kind in words (`lock deadlock`) and its text.
    by_task: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    #: `⚠ 2 warnings: lock deadlock (transfer-a, transfer-b) · ...` ("" when none).
    summary: str = ""

    @property
    def task_ids(self) -> frozenset[str]:
        return frozenset(self.by_task)

    @classmethod
    def of(cls, findings: Iterable[FindingFacts], model: TaskModel) -> Warnings:
        texts: list[str] = []
        by_task: dict[str, list[tuple[str, str]]] = {}
        found = list(findings)
        for finding in found:
            text = finding_text(finding, model)
            texts.append(text)
            title = WARNING_NAMES.get(finding.kind, finding.kind)
            for task_id in finding.tasks:
                by_task.setdefault(task_id, []).append((title, text))
        return cls(
            tuple(texts),
            {task_id: tuple(words) for task_id, words in by_task.items()},
            warnings_summary(found, model),
        )


def model_copy(model: TaskModel) -> TaskModel:
    """A copy another thread can read while the screen's thread updates the model: its own
    dicts and lists, the same records (records are replaced, never changed)."""
    return dataclasses.replace(
        model,
        loops=dict(model.loops),
        tasks=dict(model.tasks),
        cycles=list(model.cycles),
        last_changed=set(),
        last_removed=set(),
    )


def look(model: TaskModel) -> Warnings:
    """Find the warnings of `model` (a copy: see `model_copy`) and put them in words."""
    return Warnings.of(find_warnings(model), model)
