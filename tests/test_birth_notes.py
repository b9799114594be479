"""The notes the agent takes on the host's loop thread when a task is made and when it ends
(`Tracker`'s create_task shadow and done callback) against a real loop: the facts a history
record shows come through them whole, each task gets its own parent, and a note left behind
by a task that died pending is never taken for another task at the same address."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from taskscope.agent.tracker import FinishedTask, Tracker
from tests.helpers import with_tracker


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _stuck() -> None:
    await asyncio.sleep(3600)


async def _forgotten() -> None:
    await asyncio.get_running_loop().create_future()  # a future only this task holds


def _finished(tracker: Tracker, name: str) -> FinishedTask:
    [record] = [task for task in tracker.finished_tasks() if task.name == name]
    return record


def test_children_of_parents_made_in_turns_each_get_their_own_parent() -> None:
    # GIVEN two parents making children in turns (the shadow keeps the last parent seen)
    async def child(value: int) -> int:
        await asyncio.sleep(0)
        return value

    async def parent(label: str, turns: list[asyncio.Event], done: asyncio.Event) -> None:
        for index, turn in enumerate(turns):
            await turn.wait()
            await asyncio.create_task(child(index), name=f"{label}-{index}")
            done.set()

    async def scenario(tracker: Tracker) -> None:
        turns_a = [asyncio.Event() for _ in range(2)]
        turns_b = [asyncio.Event() for _ in range(2)]
        done = asyncio.Event()
        first = asyncio.create_task(parent("a", turns_a, done), name="parent-a")
        second = asyncio.create_task(parent("b", turns_b, done), name="parent-b")
        for turn in (turns_a[0], turns_b[0], turns_a[1], turns_b[1]):
            done.clear()
            turn.set()
            await done.wait()
        await asyncio.gather(first, second)
        await _settle()
        # WHEN the history is read
        ids = {name: _finished(tracker, name).task_id for name in ("parent-a", "parent-b")}
        # THEN each child names its own parent, and all ids differ
        for label in ("a", "b"):
            for index in range(2):
                record = _finished(tracker, f"{label}-{index}")
                assert record.parent_id == ids[f"parent-{label}"], record
                assert record.summary == str(index) and record.state == "done"
                assert record.created_from[0][0].co_name == "parent"
        all_ids = [task.task_id for task in tracker.finished_tasks()]
        assert len(all_ids) == len(set(all_ids))

    with_tracker(scenario)


def test_a_note_left_by_a_task_that_died_pending_is_not_taken_by_a_later_task() -> None:
    async def scenario(tracker: Tracker) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, _context: None)  # "destroyed but pending"
        # GIVEN a task made by create_task (a creation note) that dies pending, collected
        doomed = asyncio.create_task(_forgotten(), name="doomed")
        await asyncio.sleep(0)
        note = tracker.birth_note(doomed)
        assert note is not None and note[1] is not None  # its parent: this test's task
        del doomed
        gc.collect()
        assert note[0]() is None
        # AND tasks made without create_task (no note of their own) at the address the
        # collector freed, as it may give it again: the dead task's note under their id
        looked_at: Any = asyncio.Task(_stuck(), loop=loop, name="looked-at")
        ended: Any = asyncio.Task(_stuck(), loop=loop, name="ended")
        tracker._born[id(looked_at)] = note
        tracker._born[id(ended)] = note
        # WHEN the agent first looks at one, and the other ends with the agent's callback
        meta = tracker.ensure_meta(looked_at)
        ended.add_done_callback(tracker.done_callback)
        ended.cancel()
        await _settle()
        # THEN neither is taken for the dead task: nothing is known of their creation
        assert meta.parent_id is None and meta.created_at is None
        assert meta.created_from == () and meta.seen_at is not None
        record = _finished(tracker, "ended")
        assert record.parent_id is None and record.created_at is None
        assert record.created_from == () and record.state == "cancelled"
        looked_at.cancel()
        await _settle()

    with_tracker(scenario)


def test_readers_of_the_notes_bear_a_note_its_task_finished_while_they_read() -> None:
    # A look (on the agent's thread) reads the notes while the loop's thread finishes tasks:
    # the done callback takes a note and drops its reference, and a reader that had the note
    # already (from its copy of the notes, or a `get` a moment before) then holds a note with
    # no reference. On 3.14+ a look failed on one (TypeError), which closed a dashboard's
    # subscription without a word. The state that window leaves is made here for every reader.
    async def scenario(tracker: Tracker) -> None:
        ended = asyncio.create_task(asyncio.sleep(0), name="ended")
        note = tracker._born[id(ended)]
        waiting = asyncio.create_task(_stuck(), name="waiting")
        await ended
        await _settle()
        assert note[0] is None  # its end dropped the reference
        # GIVEN a finished note still where a reader finds it (its key: any address)
        tracker._born[id(note)] = note
        from taskscope.agent.introspect import SnapshotBuilder
        from taskscope.agent.tracker import _in_noted_order, noted_task, pending_tasks

        # WHEN each reader meets it, THEN none fails, and the live task is still found
        assert noted_task(note) is None
        assert tracker.birth_note(ended) is None
        for _look in range(2):  # 3.14+: a whole read of the registry, then the noted tasks
            assert waiting in pending_tasks(tracker)
            names = {record["name"] for record in SnapshotBuilder(tracker).build_raw()["tasks"]}
            assert "waiting" in names
        assert _in_noted_order(tracker, [waiting], []) == [waiting]
        tracker.prune()
        assert id(note) not in tracker._born  # a note whose task is gone is pruned
        waiting.cancel()

    with_tracker(scenario)
