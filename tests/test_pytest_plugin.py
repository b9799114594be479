"""The pytest plugin, run the way users run it: real pytest processes on generated test suites
that hang (an Event never set, two tasks deadlocked on two Locks), that leave tasks behind,
or that never asked for taskscope."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.helpers import wait_for

HANGING_SUITE = """
import asyncio

import anyio
import pytest


def test_event_never_set():
    async def waiter(event):
        await event.wait()  # waiter-line

    async def main():
        event = asyncio.Event()
        await asyncio.create_task(waiter(event), name="stuck-waiter")

    asyncio.run(main())


def test_two_locks_deadlock():
    async def transfer(first, second):
        async with first:
            await asyncio.sleep(0.01)
            async with second:  # transfer-line
                pass

    async def main():
        a, b = asyncio.Lock(), asyncio.Lock()
        async with asyncio.TaskGroup() as group:
            group.create_task(transfer(a, b), name="transfer-a")
            group.create_task(transfer(b, a), name="transfer-b")

    asyncio.run(main())


@pytest.mark.asyncio
async def test_pytest_asyncio_event():
    async def asyncio_waiter(event):
        await event.wait()

    await asyncio.create_task(asyncio_waiter(asyncio.Event()), name="asyncio-plugin-waiter")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_anyio_event():
    async def anyio_waiter(event):
        await event.wait()

    await asyncio.create_task(anyio_waiter(asyncio.Event()), name="anyio-plugin-waiter")
"""

LEAKING_SUITE = """
import asyncio

import pytest
import pytest_asyncio


async def forever():
    await asyncio.sleep(3600)


def test_run_leaks():
    async def main():
        asyncio.create_task(forever(), name="run-left")  # run-left-line
        await asyncio.sleep(0)

    asyncio.run(main())


def test_run_clean():
    async def main():
        task = asyncio.create_task(forever(), name="run-cleaned")
        await asyncio.sleep(0)
        task.cancel()

    asyncio.run(main())


def test_run_fails():
    async def main():
        asyncio.create_task(forever(), name="left-by-a-failure")
        await asyncio.sleep(0)
        raise ValueError("the test's own failure")

    asyncio.run(main())


@pytest_asyncio.fixture
async def background():
    task = asyncio.create_task(forever(), name="fixture-task")
    yield task
    task.cancel()


@pytest.mark.asyncio
async def test_asyncio_leaks(background):
    asyncio.create_task(forever(), name="asyncio-left")  # asyncio-left-line
    await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_asyncio_clean(background):
    task = asyncio.create_task(forever(), name="asyncio-cleaned")
    await asyncio.sleep(0)
    task.cancel()


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_anyio_leaks():
    asyncio.create_task(forever(), name="anyio-left")  # anyio-left-line
    await asyncio.sleep(0)


@pytest.mark.anyio
async def test_anyio_clean():
    task = asyncio.create_task(forever(), name="anyio-cleaned")
    await asyncio.sleep(0)
    task.cancel()
"""

PLAIN_SUITE = """
import asyncio
import os
import sys
import threading


def test_runs_as_without_the_plugin():
    async def main():
        await asyncio.sleep(0)
        return 42

    assert asyncio.run(main()) == 42
    on = os.environ["EXPECT_TASKSCOPE"] == "on"
    # Off: no agent imported, no thread started (only the main thread).
    assert ("taskscope.agent" in sys.modules) is on
    assert (threading.active_count() > 1) is on, threading.enumerate()
"""


def write_suite(directory: Path, source: str, name: str) -> Path:
    # An ini file of its own: the suite's rootdir is here, not taskscope's pyproject.toml.
    (directory / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    )
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def line_of(path: Path, marker: str) -> int:
    lines = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if marker in line)


def pytest_env(**extra: str) -> dict[str, str]:
    # Not CI's either: pytest prints whole failure messages in its summary when CI is set.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PYTEST_") and key not in ("CI", "BUILD_NUMBER")
    }
    env.update(extra)
    return env


def run_pytest(
    directory: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=pytest_env(**env),
    )


def report_of(output: str, test: str) -> str:
    """The hang report printed for one test (the text between its title and its end)."""
    match = re.search(
        rf"=+ taskscope: \S*::{test} is about to time out \(3 s\): its tasks =+\n(.*?)\n"
        r"=+ end of taskscope report =+",
        output,
        re.DOTALL,
    )
    assert match is not None, f"no hang report for {test} in:\n{output}"
    return match.group(1)


def test_a_hanging_suite_prints_its_stuck_tasks_before_pytest_timeout_fails_them(
    tmp_path: Path,
) -> None:
    # GIVEN a suite whose tests hang: an Event never set (plain asyncio.run, pytest-asyncio,
    # anyio's plugin) and two tasks deadlocked on two Locks
    suite = write_suite(tmp_path, HANGING_SUITE, "test_hanging.py")
    # WHEN pytest runs it with pytest-timeout and --taskscope
    result = run_pytest(tmp_path, "--timeout", "3", "--taskscope", "test_hanging.py")
    output = result.stdout
    # THEN every test fails on pytest-timeout...
    assert result.returncode == 1, output + result.stderr
    assert output.count("Timeout (>3.0s) from pytest-timeout") == 4, output
    # ...and before its failure, the terminal (not the captured output) shows the task tree
    # in the words of `taskscope tree`, and each stuck task's stack
    failures = output.index("= FAILURES =")
    first_failure = output.index("Timeout (>3.0s) from pytest-timeout")
    waiter_line = line_of(suite, "waiter-line")
    event = report_of(output, "test_event_never_set")
    assert output.index(event) < min(failures, first_failure)
    assert re.search(r"loop MainThread running", event), event
    assert re.search(r"\n└─ stuck-waiter .* awaiting Event\.wait on event \(not set", event), event
    # How long it has waited there: at least since the look the plugin took halfway (1.35 s)
    waited = re.search(r"\n└─ stuck-waiter .* awaiting Event\.wait .*, for ≥(\d+\.\d)s", event)
    assert waited is not None and float(waited.group(1)) >= 1.2, event
    assert f"waiter  {suite}:{waiter_line}" in event
    assert "  Event.wait  " in event

    transfer_line = line_of(suite, "transfer-line")
    locks = report_of(output, "test_two_locks_deadlock")
    assert output.index(locks) < failures
    assert re.search(r"awaiting TaskGroup \(2 tasks\)", locks), locks
    for name in ("transfer-a", "transfer-b"):
        assert re.search(
            rf"[├└]─ {name} .* awaiting Lock\.acquire on \w+ \(Lock [AB], locked", locks
        ), locks
        assert re.search(rf"task \d+ {name}: pending", locks), locks
    assert locks.count(f"transfer  {suite}:{transfer_line}") == 2, locks
    assert "  Lock.acquire  " in locks
    # ...with what hangs it said in words under the tree, as `taskscope tree` says it
    assert re.search(
        r"\n! lock deadlock: transfer-(a|b) holds Lock A and waits for Lock B, held by "
        r"transfer-(a|b), which waits for Lock A\n",
        locks,
    ), locks

    for test, task in (
        ("test_pytest_asyncio_event", "asyncio-plugin-waiter"),
        ("test_anyio_event", "anyio-plugin-waiter"),
    ):
        report = report_of(output, test)
        assert output.index(report) < failures
        assert re.search(rf"{task} .* awaiting Event\.wait on event \(not set", report), report
        assert f"{test}  {suite}:" in report  # the test's own frame, in its task's stack


def test_the_hang_report_comes_before_the_thread_method_ends_the_run(tmp_path: Path) -> None:
    # GIVEN a hanging test and pytest-timeout's thread method, which dumps every thread's
    # stack and ends the process (no failure report at all)
    write_suite(tmp_path, HANGING_SUITE, "test_hanging.py")
    result = run_pytest(
        tmp_path,
        "--timeout=3",
        "--timeout-method=thread",
        "--taskscope",
        "test_hanging.py::test_event_never_set",
    )
    # THEN the task tree was printed first
    output = result.stdout + result.stderr
    assert result.returncode != 0
    report = report_of(result.stdout, "test_event_never_set")
    assert "awaiting Event.wait" in report
    assert output.index(report) < output.index("+ Timeout +"), output


def test_a_signal_prints_the_task_tree_on_demand(tmp_path: Path) -> None:
    # GIVEN a test stuck on an Event, no timeout, and a chosen signal
    ready = tmp_path / "ready"
    write_suite(
        tmp_path,
        f"""
        import asyncio
        from pathlib import Path

        def test_waits_for_ever():
            async def waiter(event):
                Path({str(ready)!r}).touch()
                await event.wait()

            async def main():
                await asyncio.create_task(waiter(asyncio.Event()), name="on-demand-waiter")

            asyncio.run(main())
        """,
        "test_signal.py",
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:timeout",
            "--taskscope",
            "--taskscope-signal=SIGUSR2",
            "test_signal.py",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=pytest_env(),
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        stdout = process.stdout

        def read_all() -> None:
            for line in stdout:
                lines.append(line)  # noqa: PERF402 (one at a time: read while it runs)

        reader = threading.Thread(target=read_all, daemon=True)
        reader.start()
        wait_for(ready.exists, what="the test to start waiting")
        # WHEN the pytest process receives the signal (twice: it keeps working)
        for count in (1, 2):
            process.send_signal(signal.SIGUSR2)
            wait_for(
                lambda count=count: "".join(lines).count("end of taskscope report") == count,
                what=f"report {count}",
            )
        # THEN the tree of the running test's loop is printed each time, the test goes on
        output = "".join(lines)
        assert "taskscope: SIGUSR2: tasks of test_signal.py::test_waits_for_ever" in output
        assert re.search(r"on-demand-waiter .* awaiting Event\.wait on event", output), output
        assert process.poll() is None, output
    finally:
        process.kill()
        process.wait(timeout=30)


def test_leaked_tasks_fail_the_test_that_left_them(tmp_path: Path) -> None:
    # GIVEN tests that leave a task pending (on asyncio.run's loop, which cancels it without
    # a word; on pytest-asyncio's loop, which outlives the test; under anyio's plugin), each
    # next to a clean test of the same shape, and a fixture whose task is not a leak
    suite = write_suite(tmp_path, LEAKING_SUITE, "test_leaking.py")
    # WHEN pytest runs them with --taskscope-leaks
    result = run_pytest(tmp_path, "--taskscope-leaks", "test_leaking.py")
    output = result.stdout
    # THEN exactly the leaking tests fail, each naming its task, what it awaits, and the line
    # that created it
    failed = set(re.findall(r"^FAILED test_leaking\.py::(\w+)", output, re.MULTILINE))
    passed = set(re.findall(r"^PASSED test_leaking\.py::(\w+)", output, re.MULTILINE))
    assert failed == {
        "test_run_leaks",
        "test_asyncio_leaks",
        "test_anyio_leaks",
        "test_run_fails",
    }, output
    assert passed == {"test_run_clean", "test_asyncio_clean", "test_anyio_clean"}, output
    for test, task in (
        ("test_run_leaks", "run-left"),
        ("test_asyncio_leaks", "asyncio-left"),
        ("test_anyio_leaks", "anyio-left"),
    ):
        section = output[output.index(f"_ {test} _") :]
        created = line_of(suite, f"{task}-line")
        assert re.search(
            rf"this test left 1 task pending when it ended:\n  {task}  forever\(\)  "
            rf"awaiting sleep, 3600 s left.*\n +created at {test}\S*  {suite}:{created}\n",
            section,
        ), section
    # Not leaks: a fixture's task, tasks the test cancelled, and what asyncio.run cleans up
    # after a test that failed on its own (its failure says enough)
    assert "fixture-task" not in output
    assert "cleaned" not in output
    assert "ValueError: the test's own failure" in output
    assert "left-by-a-failure  forever()" not in output
    assert "tasks left pending" not in output
    assert result.returncode == 1

    # Without the option the same tests pass: the failures above are the plugin's.
    unchecked = run_pytest(
        tmp_path, "test_leaking.py", "--deselect=test_leaking.py::test_run_fails"
    )
    assert unchecked.returncode == 0, unchecked.stdout
    assert "6 passed, 1 deselected" in unchecked.stdout


@pytest.mark.parametrize(
    ("args", "env", "expect"),
    [
        ((), {}, "off"),
        (("-p", "taskscope"), {}, "on"),
        (("--taskscope",), {}, "on"),
        (("-p", "taskscope"), {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, "on"),
    ],
    ids=["installed-not-asked", "p-taskscope", "--taskscope", "no-autoload-p-taskscope"],
)
def test_the_plugin_is_off_until_asked_for(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], expect: str
) -> None:
    # GIVEN a plain suite, with the plugin installed (pytest loads its entry point)
    write_suite(tmp_path, PLAIN_SUITE, "test_plain.py")
    # WHEN pytest runs it with or without asking for taskscope
    result = run_pytest(tmp_path, *args, "test_plain.py", EXPECT_TASKSCOPE=expect, **env)
    # THEN the test sees the agent (its module and its threads) only when asked for
    assert "taskscope-0.1.0" in result.stdout  # the entry point was loaded either way
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.parametrize("name", ["SIGFOO", "SIGKILL"])
def test_a_signal_that_cannot_be_used_is_one_line(tmp_path: Path, name: str) -> None:
    write_suite(tmp_path, PLAIN_SUITE, "test_plain.py")
    result = run_pytest(
        tmp_path, "--taskscope", f"--taskscope-signal={name}", EXPECT_TASKSCOPE="on"
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR: --taskscope-signal: "), errors
    assert "Traceback" not in result.stdout + result.stderr
