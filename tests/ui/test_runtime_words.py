"""The words the dashboard's runtime figures, stalls and warnings are said in
(`taskscope.words`), checked on their own: the pilot tests read them on screen."""

from __future__ import annotations

from taskscope.lints import Finding
from taskscope.model import TaskModel
from taskscope.words import (
    lag_text,
    moments_words,
    no_stalls_words,
    rate_text,
    share_text,
    stall_words,
    stalled_by,
    wait_words,
    warnings_summary,
)
from tests.ui.fakes import NOW, service_tasks, snapshot


def test_loop_figures() -> None:
    assert [rate_text(x) for x in (None, 45.2, 2100.0, 3_400_000.0)] == [
        "-",
        "45/s",
        "2.1k/s",
        "3.4M/s",
    ]
    assert [share_text(x) for x in (None, 0.0, 0.001, 0.34, 1.0)] == [
        "-",
        "0%",
        "<1%",
        "34%",
        "100%",
    ]
    assert [lag_text(x) for x in (None, 0.0004, 0.25, 1.5)] == ["-", "0.4 ms", "250 ms", "1.5 s"]


def test_when_a_task_ran_and_how_long_it_has_waited_where_it_is() -> None:
    assert moments_words(NOW - 2.1, (41.0, False), NOW) == "last ran 2.1s ago · waiting 41.0s"
    assert moments_words(None, (3.0, False), NOW) == "waiting 3.0s"
    assert moments_words(None, (None, False), NOW) == ""
    # Counted from the first look that found it there: a lower bound, said only once it says
    # something (the first look finds every task waiting for "≥0s").
    assert moments_words(None, (41.0, True), NOW) == "waiting ≥41.0s"
    assert moments_words(NOW - 2.1, (0.4, True), NOW) == "last ran 2.1s ago"
    assert wait_words(0.4, False) == "400ms"
    assert wait_words(0.4, True) == wait_words(None, False) == ""
    assert wait_words(1.0, True) == "≥1.0s"


def test_stall_words() -> None:
    assert stall_words(0.31, ongoing=False) == "blocked the loop 310 ms"
    assert stall_words(4.2, ongoing=True) == "blocking the loop for 4.20 s (still running)"
    assert no_stalls_words(0.1) == "no step longer than the 100 ms stall threshold"
    assert "does not time" in no_stalls_words(None)


def test_who_stalled_says_what_a_task_asyncio_named_ran() -> None:
    outermost = "RequestResponseCycle.run_asgi"
    assert stalled_by("Task-31", "31", None, outermost) == "Task-31 run_asgi()"
    assert stalled_by("crunch", "9", None, outermost) == "crunch"
    assert stalled_by("Task-31", "31", None, None) == "Task-31"
    assert stalled_by(None, "31", None, outermost) == "task 31"
    assert stalled_by(None, None, "on_timer", "on_timer") == "on_timer"
    assert stalled_by(None, None, None, None) == "?"


def test_the_header_line_names_each_warning_and_its_tasks() -> None:
    # GIVEN the scripted service's model (fetch-7 and fetch-8 await each other)
    model = TaskModel.from_snapshot(snapshot(service_tasks()))
    cycle = Finding("await_cycle", ("7", "8"), "L1", {})
    failed = Finding("exception_never_retrieved", ("33",), "L1", {})
    # THEN one line, its count, each kind with its tasks by name
    assert warnings_summary([cycle, failed], model) == (
        "⚠ 2 warnings: await cycle (fetch-7, fetch-8) · exception never retrieved (parse-33)"
    )
    many = Finding("lock_deadlock", ("1", "2", "3", "4", "5"), None, {})
    assert warnings_summary([many], model) == (
        "⚠ 1 warning: lock deadlock (main, api-server, dispatcher +2)"
    )
    assert warnings_summary([], model) == ""
