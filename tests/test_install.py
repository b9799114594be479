"""install() and uninstall() inside a process: idempotent, from any thread, before or inside a
loop, and uninstall restores everything it changed. Each case runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import REPO


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_importing_the_agent_loads_no_ui_or_third_party_modules() -> None:
    result = run_python("""
        import sys
        import taskscope, taskscope.agent, taskscope.protocol
        taskscope.install()
        banned = [m for m in ("textual", "rich", "psutil", "aiomonitor") if m in sys.modules]
        print(banned)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("where", ["before-run", "inside-loop", "other-thread"])
def test_install_works_from_anywhere_and_sees_tasks(where: str) -> None:
    result = run_python(f"""
        import asyncio, threading, taskscope
        from taskscope.agent import socket_file
        from taskscope.client import AgentClient
        import os

        where = {where!r}
        if where == "before-run":
            taskscope.install(); taskscope.install()
        elif where == "other-thread":
            thread = threading.Thread(target=taskscope.install); thread.start(); thread.join()

        async def sleeper():
            await asyncio.sleep(60)

        async def main():
            if where == "inside-loop":
                taskscope.install()
            task = asyncio.create_task(sleeper(), name="the-sleeper")
            await asyncio.sleep(0.05)
            def look():
                with AgentClient(os.getpid()) as client:
                    return client.snapshot()
            snap = await asyncio.to_thread(look)
            names = {{t["name"]: t for t in snap["tasks"]}}
            sleeper_record = names["the-sleeper"]
            print(sleeper_record["awaiting"]["kind"], sleeper_record["parent"] is not None)
            task.cancel()

        asyncio.run(main())
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["sleep", "True"]


def test_uninstall_restores_everything() -> None:
    result = run_python("""
        import asyncio, os, taskscope
        import asyncio.events as events
        from taskscope.agent import socket_file

        original = events._set_running_loop
        original_new_event_loop = events.new_event_loop
        original_lazy_init = asyncio.Runner._lazy_init

        async def main():
            loop = asyncio.get_running_loop()
            factory = loop.get_task_factory()
            taskscope.install()
            path = socket_file()
            patched = (
                "create_task" in vars(loop)
                and events._set_running_loop is not original
                and asyncio._set_running_loop is not original
                and asyncio.Runner._lazy_init is not original_lazy_init
            )
            await asyncio.sleep(0.3)  # a heartbeat runs
            taskscope.uninstall()
            await asyncio.sleep(0)
            restored = (
                "create_task" not in vars(loop)
                and events._set_running_loop is original
                and asyncio._set_running_loop is original
                and asyncio.Runner._lazy_init is original_lazy_init
                and events.new_event_loop is original_new_event_loop
                and loop.get_task_factory() is factory
                and not os.path.exists(path)
                and not [h for h in loop._scheduled if not h.cancelled()]
            )
            print(patched, restored)

        asyncio.run(main())
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


def test_forked_child_does_not_inherit_the_agent() -> None:
    result = run_python("""
        import os, taskscope
        from taskscope.agent import is_installed, socket_file
        taskscope.install()
        path = socket_file()
        pid = os.fork()
        if pid == 0:
            os._exit(0 if not is_installed() else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), os.path.exists(path))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True"]


def test_light_mode_runs_nothing_per_task_and_still_sees_every_task() -> None:
    result = run_python("""
        import asyncio, os, taskscope
        from taskscope.client import AgentClient

        async def main():
            taskscope.install(track_tasks=False)
            loop = asyncio.get_running_loop()
            task = asyncio.create_task(asyncio.sleep(60), name="the-sleeper")
            done = asyncio.create_task(asyncio.sleep(0), name="quick")
            await done
            await asyncio.sleep(0.05)
            def look():
                with AgentClient(os.getpid()) as client:
                    return client.snapshot()
            snap = await asyncio.to_thread(look)
            names = {t["name"]: t for t in snap["tasks"]}
            print("create_task" in vars(loop), names["the-sleeper"]["awaiting"]["kind"],
                  names["the-sleeper"]["parent"], "quick" in names)
            task.cancel()

        asyncio.run(main())
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "sleep", "None", "False"]


def test_loops_on_several_threads_finish_tasks_without_a_callback_error() -> None:
    """The history callback runs in a context of the agent's, one per loop: a context shared
    by loops on several threads could be entered twice at once, which asyncio reports as an
    error in the host's callbacks (a tiny switch interval makes that happen at once)."""
    result = run_python(
        """
        import asyncio, sys, threading
        import taskscope

        sys.setswitchinterval(1e-6)
        taskscope.install(history=100)
        errors = []

        async def churn():
            asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))

            async def noop():
                pass

            for _ in range(100):
                await asyncio.gather(*[asyncio.create_task(noop()) for _ in range(100)])

        threads = [threading.Thread(target=asyncio.run, args=(churn(),)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print("errors", len(errors))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["errors", "0"]
    assert result.stderr == ""


def test_a_printed_task_names_taskscope_as_whose_callback_it_has() -> None:
    # A program that prints or logs a task shows its done callbacks (asyncio's debug mode
    # logs slow steps so): the agent's one says it is taskscope's, not an anonymous closure.
    result = run_python("""
        import asyncio, taskscope

        async def main():
            taskscope.install()
            task = asyncio.create_task(asyncio.sleep(60), name="printed")
            await asyncio.sleep(0)
            print(repr(task))
            task.cancel()

        asyncio.run(main())
    """)
    assert result.returncode == 0, result.stderr
    assert "cb=[taskscope_history()" in result.stdout
    assert "<locals>" not in result.stdout
