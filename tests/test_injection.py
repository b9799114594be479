"""taskscope.attach.injection against real processes: each target mode, repeated injections,
and every error the user can meet.  Targets run on `sys.executable`, so the suite checks the
Python running it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskscope.attach import injection, payload, remote_exec
from taskscope.attach.errors import (
    DebuggerMissing,
    InjectionError,
    InjectionTimeout,
    NoSuchProcess,
    NotPython,
    PtraceNotPermitted,
    RemoteDebugDisabled,
    TargetExited,
    UnsupportedPython,
)
from taskscope.attach.injection import run_in_process
from taskscope.attach.interpreter import matching_interpreter
from taskscope.attach.target import TargetInfo, inspect_target

REPO = Path(__file__).parent.parent
TARGET = Path(__file__).parent / "targets" / "injection_target.py"
VERSION = sys.version_info[:2]
USES_GDB = VERSION < (3, 14)

needs_gdb = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")


class Target:
    """A running injection_target.py in one of its modes."""

    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.ready_file = workdir / f"ready-{mode}"
        self.process = subprocess.Popen(
            [sys.executable, str(TARGET), mode, str(self.ready_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 20
        while not self.ready_file.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"target exited early: {self.process.communicate()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"target {mode} never became ready")
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def finish(self) -> tuple[int, str, str]:
        os.kill(self.pid, signal.SIGUSR1)
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    started: list[Target] = []

    def _start(mode: str) -> Target:
        target = Target(mode, tmp_path)
        started.append(target)
        return target

    yield _start
    for target in started:
        target.kill()


def expected_output(mode: str) -> str:
    return f"{mode}: started\n{mode}: finished\n"


def marker_code(path: Path) -> str:
    """Code that writes `path` whole at once (a test waiting for it to exist never reads it
    half written: made under another name, then renamed)."""
    return (
        "import json, os, sys, threading\n"
        f"with open({str(path) + '.part'!r}, 'w') as f:\n"
        "    json.dump({'thread': threading.current_thread().name,\n"
        "               'version': list(sys.version_info[:2]), 'pid': os.getpid()}, f)\n"
        f"os.replace({str(path) + '.part'!r}, {str(path)!r})\n"
    )


def read_marker(path: Path) -> dict[str, object]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def entry_bytes(pid: int) -> bytes:
    auxv = Path(f"/proc/{pid}/auxv").read_bytes()
    entry = next(
        value
        for key, value in (struct.unpack_from("<QQ", auxv, i) for i in range(0, len(auxv), 16))
        if key == 9
    )
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(entry)
        return mem.read(16)


def writable_code(pid: int) -> list[str]:
    """The target's mappings both writable and executable (the stub's, while it is there)."""
    return [line for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if " rwx" in line]


def assert_nothing_left(pid: int, entry_before: bytes) -> None:
    assert entry_bytes(pid) == entry_before, "the entry point was not restored"
    assert "/SYSV" not in Path(f"/proc/{pid}/maps").read_text(), "a shared memory segment is left"
    assert writable_code(pid) == [], "the stub's memory is left"
    assert Path(f"/proc/{pid}/status").read_text().count("TracerPid:\t0") == 1


# Which way the gdb mechanism must take for each mode (busy may be caught either way).
GDB_MODE = {
    "idle": "direct",
    "sleep": "direct",
    "threads": "direct",
    "spin": "queued",
    "lock": "queued",
    "busy": None,
}


@needs_gdb
@pytest.mark.parametrize("mode", ["idle", "busy", "sleep", "spin", "lock", "threads"])
def test_inject_each_mode(
    start, tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskscope.attach")
    target = start(mode)
    before = entry_bytes(target.pid)
    marker = tmp_path / "marker.json"
    began = time.monotonic()
    run_in_process(target.pid, marker_code(marker), timeout=10)
    elapsed = time.monotonic() - began
    # run_in_process returns after the code ran: the marker is there already.
    assert read_marker(marker) == {
        "thread": "MainThread",
        "version": list(VERSION),
        "pid": target.pid,
    }
    assert elapsed < 5, f"injection took {elapsed:.2f} s"
    assert target.alive()
    if USES_GDB:
        assert_nothing_left(target.pid, before)
        expected = GDB_MODE[mode]
        if expected is not None:
            assert f"process {target.pid}: {expected} " in caplog.text
        if expected == "direct":
            # A main thread parked in a system call runs the code in one stop of gdb's.
            assert f"process {target.pid}: direct by the stub " in caplog.text
    returncode, out, err = target.finish()
    assert (returncode, out, err) == (0, expected_output(mode), "")


@needs_gdb
@pytest.mark.skipif(not USES_GDB, reason="3.14+ runs the code through sys.remote_exec")
def test_gdb_warms_up_on_a_process_of_ours(
    start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an idle loop, and a record of the commands gdb is started with
    from taskscope.attach import gdb as gdb_module

    commands: list[list[str]] = []
    popen = subprocess.Popen

    def recording_popen(command: list[str], *args: object, **kwargs: object) -> object:
        commands.append(list(command))
        return popen(command, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(gdb_module.subprocess, "Popen", recording_popen)
    target = start("idle")
    marker = tmp_path / "marker.json"
    # WHEN code is run in it
    run_in_process(target.pid, marker_code(marker), timeout=10)
    assert read_marker(marker)["pid"] == target.pid
    # THEN gdb first attached to a process of ours (its test of what ptrace can do, two forks,
    # is done before the target is stopped), which is gone now
    gdb_command = next(command for command in commands if "-batch" in command)
    attached = [int(arg.split()[1]) for arg in gdb_command if arg.startswith("attach ")]
    assert len(attached) == 2 and attached[1] == target.pid
    warm_up = attached[0]
    assert warm_up != target.pid
    assert not Path(f"/proc/{warm_up}").exists()


def writable_code_refused() -> bool:
    """Whether this kernel has the prctl that forbids writable code (Linux 6.3+)."""
    import ctypes

    pr_get_mdwe = 66
    return int(ctypes.CDLL(None, use_errno=True).prctl(pr_get_mdwe, 0, 0, 0, 0)) >= 0


@needs_gdb
@pytest.mark.skipif(not USES_GDB, reason="3.14+ runs the code through sys.remote_exec")
@pytest.mark.skipif(not writable_code_refused(), reason="no PR_SET_MDWE in this kernel")
def test_no_writable_code_runs_the_calls_one_by_one(
    start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN an idle loop in a process that may map no memory writable and executable (as
    # under systemd's MemoryDenyWriteExecute=), so the stub can't be mapped
    caplog.set_level(logging.DEBUG, logger="taskscope.attach")
    target = start("no-wx")
    before = entry_bytes(target.pid)
    marker = tmp_path / "marker.json"
    # WHEN code is run in it
    run_in_process(target.pid, marker_code(marker), timeout=10)
    # THEN it ran on the main thread all the same, by the calls one by one
    assert read_marker(marker)["thread"] == "MainThread"
    assert f"process {target.pid}: direct (main thread in " in caplog.text
    assert_nothing_left(target.pid, before)
    assert target.finish() == (0, expected_output("no-wx"), "")


@pytest.mark.parametrize("mode", ["idle", "busy", "sleep", "spin", "lock", "threads"])
def test_target_output_without_injection(start, mode: str) -> None:
    target = start(mode)
    assert target.finish() == (0, expected_output(mode), "")


@needs_gdb
@pytest.mark.parametrize("mode", ["idle", "spin"])
def test_twenty_injections_in_a_row(start, tmp_path: Path, mode: str) -> None:
    target = start(mode)
    before = entry_bytes(target.pid)
    for i in range(20):
        marker = tmp_path / f"marker-{i}.json"
        run_in_process(target.pid, marker_code(marker), timeout=10)
        assert read_marker(marker)["thread"] == "MainThread"
    assert target.alive()
    if USES_GDB:
        assert_nothing_left(target.pid, before)
    assert target.finish() == (0, expected_output(mode), "")


@needs_gdb
def test_code_that_raises_does_not_disturb_the_target(start, tmp_path: Path) -> None:
    target = start("idle")
    for code in ("raise ValueError('boom')", "import sys; sys.exit(3)", "this is not python"):
        run_in_process(target.pid, code)
    run_in_process(target.pid, marker_code(tmp_path / "m.json"))
    assert read_marker(tmp_path / "m.json")["thread"] == "MainThread"
    assert target.finish() == (0, expected_output("idle"), "")


@needs_gdb
def test_code_runs_outside_main_namespace(start, tmp_path: Path) -> None:
    target = start("idle")
    marker = tmp_path / "ns.txt"
    run_in_process(
        target.pid,
        "import sys\n"
        "ts_main = sys.modules['__main__']\n"
        f"open({str(marker)!r}, 'w').write(__name__ + ' ' + str(hasattr(ts_main, 'marker')))\n"
        "marker = 1\n",
    )
    run_in_process(
        target.pid,
        "import sys\n"
        "ts_main = sys.modules['__main__']\n"
        "leaked = hasattr(ts_main, 'marker') or hasattr(ts_main, 'ts_main')\n"
        f"open({str(marker)!r}, 'a').write(' ' + str(leaked))\n",
    )
    assert marker.read_text() == "__taskscope_injection__ False False"
    assert target.finish() == (0, expected_output("idle"), "")


def test_inspect_target_reads_the_process(start) -> None:
    target = start("idle")
    info = inspect_target(target.pid)
    assert info.pid == target.pid
    assert info.version == VERSION
    assert os.path.realpath(info.executable) == os.path.realpath(f"/proc/{target.pid}/exe")
    maps = Path(f"/proc/{target.pid}/maps").read_text()
    if info.libpython is None:
        assert "libpython" not in maps
    else:
        assert info.libpython in maps
    assert target.finish()[0] == 0


# --------------------------------------------------------------------------------------------------
# Errors


def test_no_such_process() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    with pytest.raises(NoSuchProcess, match="no process with pid"):
        inspect_target(pid_max + 1)
    with pytest.raises(NoSuchProcess):
        run_in_process(pid_max + 1, "pass")
    for bad in (0, -5):
        with pytest.raises(NoSuchProcess, match="not a process id"):
            run_in_process(bad, "pass")


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []

    def _sleeper(name: str = "sleep") -> int:
        program = shutil.which("sleep")
        assert program is not None
        if name != "sleep":
            copy = tmp_path / name
            shutil.copy(program, copy)
            program = str(copy)
        process = subprocess.Popen([program, "100"])
        processes.append(process)
        deadline = time.monotonic() + 5
        while os.path.realpath(f"/proc/{process.pid}/exe") != os.path.realpath(program):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        return process.pid

    yield _sleeper
    for process in processes:
        process.kill()
        process.wait()


def test_not_python(sleeper) -> None:
    pid = sleeper()
    with pytest.raises(NotPython, match=r"\(sleep, .*\) is not a Python process"):
        run_in_process(pid, "pass")


def test_python_named_program_without_python_inside(sleeper) -> None:
    pid = sleeper("python3.12")
    with pytest.raises(NotPython, match="exports no Python C-API symbols"):
        inspect_target(pid)


def test_python_older_than_311(sleeper) -> None:
    pid = sleeper("python3.9")
    with pytest.raises(UnsupportedPython, match=r"runs Python 3\.9; taskscope needs Python 3\.11"):
        run_in_process(pid, "pass")


def test_gdb_missing(start, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # 3.11-3.13 need gdb for any attach; 3.14+ only for a main thread parked in a lock while
    # another thread runs the loop (sys.remote_exec and a ptrace interrupt cannot reach it).
    # Either way the error says what to do.
    target = start("idle" if USES_GDB else "lock")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DebuggerMissing, match="apt-get install gdb"):
        run_in_process(target.pid, "pass", timeout=2.0)
    assert target.finish()[0] == 0


@pytest.mark.skipif(USES_GDB, reason="needs 3.14+ (sys.remote_exec): 3.11-3.13 go in with gdb only")
@pytest.mark.parametrize("mode", ["idle", "sleep"])
def test_parked_main_thread_reached_without_gdb(
    start, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str
) -> None:
    # An idle loop's main thread sits in epoll_wait, a blocked one in time.sleep's
    # clock_nanosleep: a ptrace interrupt (the sleep's restart turned into EINTR) makes it
    # check for pending work, which runs sys.remote_exec's script, on the main thread, fast.
    target = start(mode)
    monkeypatch.setenv("PATH", str(tmp_path))  # no gdb to fall back on
    marker = tmp_path / "ran.json"
    started = time.monotonic()
    run_in_process(target.pid, marker_code(marker), timeout=5.0)
    assert time.monotonic() - started < 1.0
    assert read_marker(marker)["thread"] == "MainThread"
    assert "TracerPid:\t0" in Path(f"/proc/{target.pid}/status").read_text()
    assert target.finish() == (0, expected_output(mode), "")


@needs_gdb
def test_already_traced(start, tmp_path: Path) -> None:
    target = start("idle")
    # A tracer that only seizes the target (it keeps running) and holds on until stdin closes.
    tracer = subprocess.Popen(
        [sys.executable, "-c",
         "import ctypes, sys\n"
         "libc = ctypes.CDLL(None, use_errno=True)\n"
         "libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]\n"
         f"assert libc.ptrace(0x4206, {target.pid}, None, None) == 0, ctypes.get_errno()\n"
         "print('seized', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert tracer.stdout is not None
        assert tracer.stdout.readline() == "seized\n"
        with pytest.raises(
            PtraceNotPermitted, match=rf"already being traced by pid {tracer.pid} \(python"
        ):
            run_in_process(target.pid, "pass")
    finally:
        tracer.communicate("")
    assert target.alive()
    assert target.finish() == (0, expected_output("idle"), "")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the injector as another user")
def test_other_users_process(start) -> None:
    python = shutil.which("python3", path="/usr/bin:/usr/local/bin") or shutil.which(
        f"python{VERSION[0]}.{VERSION[1]}", path="/usr/bin:/usr/local/bin"
    )
    if python is None:
        pytest.skip("no system python3 that an unprivileged user can run")
    target = start("idle")
    check = subprocess.run(
        [python, "-c",
         "import sys, taskscope.attach.injection as i, taskscope.attach.errors as e\n"
         "assert sys.version_info >= (3, 10)\n"
         "try:\n"
         f"    i.run_in_process({target.pid}, 'pass')\n"
         "except e.PtraceNotPermitted as error:\n"
         "    print(error)\n"],
        user=65534, group=65534, cwd="/", env={"PYTHONPATH": str(REPO)},
        capture_output=True, text=True,
    )  # fmt: skip
    if check.returncode != 0:
        pytest.skip(f"the system python3 can't run taskscope: {check.stderr.strip()[-200:]}")
    assert "belongs to uid 0, not to you (uid 65534)" in check.stdout
    assert target.finish()[0] == 0


@needs_gdb
def test_target_exits_while_attached(start) -> None:
    target = start("idle")
    with pytest.raises(TargetExited, match=f"process {target.pid} exited"):
        run_in_process(target.pid, "import os; os._exit(7)")
    assert target.process.wait(timeout=10) == 7


@needs_gdb
def test_timeout_when_main_thread_never_reaches_python(start, tmp_path: Path) -> None:
    # The main thread spends seconds inside one C call (pbkdf2, GIL released), so the code can
    # only run when it returns: a short timeout expires first, and the code runs later.
    target = start("hash")
    marker = tmp_path / "late.json"
    with pytest.raises(InjectionTimeout, match="did not"):
        run_in_process(target.pid, marker_code(marker), timeout=1.5)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the queued code never ran"
        time.sleep(0.05)
    assert read_marker(marker)["thread"] == "MainThread"
    assert target.finish() == (0, expected_output("hash"), "")


@needs_gdb
def test_timeout_while_waiting_for_the_gil_leaves_gdb_to_finish(start, tmp_path: Path) -> None:
    # The main thread is parked, so the code runs on it right away, but a thread holds the GIL
    # inside one C call for seconds.  We give up waiting; gdb must not be killed mid-call: it
    # finishes, restores the thread and detaches by itself.
    target = start("gil")
    before = entry_bytes(target.pid)
    marker = tmp_path / "late.json"
    # 3.14+ interrupts the main thread's epoll_wait first: it then waits for the GIL, and
    # gdb's queued code as well as sys.remote_exec's wait with it (a claim runs it once).
    expected = "gdb detaches on its own" if USES_GDB else "did not reach a point"
    with pytest.raises(InjectionTimeout, match=expected):
        run_in_process(target.pid, marker_code(marker), timeout=1.5)
    deadline = time.monotonic() + 30
    while (
        not marker.exists() or "TracerPid:\t0" not in Path(f"/proc/{target.pid}/status").read_text()
    ):
        assert time.monotonic() < deadline, "gdb never finished"
        time.sleep(0.05)
    assert read_marker(marker)["thread"] == "MainThread"
    assert_nothing_left(target.pid, before)
    assert target.finish() == (0, expected_output("gil"), "")


# --------------------------------------------------------------------------------------------------
# Decision logic of the 3.14+ path (sys.remote_exec), which can't run against a real 3.13 target


@pytest.mark.parametrize(
    ("argv", "options"),
    [
        (["python3", "app.py", "-X", "disable-remote-debug"], []),
        (["python3", "-X", "disable-remote-debug", "app.py"], ["-Xdisable-remote-debug"]),
        (["python3", "-Xdisable-remote-debug", "-m", "app"], ["-Xdisable-remote-debug"]),
        (["python3", "-IsX", "dev", "-c", "pass", "-E"], ["-I", "-s", "-Xdev"]),
        (["python3", "-W", "error", "-E", "--", "-X"], ["-Werror", "-E"]),
        (["python3", "--check-hash-based-pycs", "always", "-E", "app.py"],
         ["--check-hash-based-pycs", "-E"]),
    ],
)  # fmt: skip
def test_python_options(argv: list[str], options: list[str]) -> None:
    assert remote_exec.python_options(argv) == options


@pytest.mark.parametrize(
    ("environ", "argv", "reason"),
    [
        ({}, ["python3", "app.py"], None),
        ({"PYTHON_DISABLE_REMOTE_DEBUG": "1"}, ["python3", "a.py"], "PYTHON_DISABLE_REMOTE_DEBUG"),
        ({"PYTHON_DISABLE_REMOTE_DEBUG": ""}, ["python3", "app.py"], None),
        ({"PYTHON_DISABLE_REMOTE_DEBUG": "1"}, ["python3", "-E", "app.py"], None),
        ({"PYTHON_DISABLE_REMOTE_DEBUG": "1"}, ["python3", "-I", "app.py"], None),
        ({}, ["python3", "-X", "disable-remote-debug", "app.py"], "-X disable-remote-debug"),
        ({}, ["python3", "app.py", "-X", "disable-remote-debug"], None),
    ],
)  # fmt: skip
def test_remote_debug_disabled(
    environ: dict[str, str], argv: list[str], reason: str | None
) -> None:
    assert remote_exec.remote_debug_disabled(environ, argv) == reason


def fake_314(pid: int) -> TargetInfo:
    return TargetInfo(pid=pid, version=(3, 14), executable=sys.executable, libpython=None)


def test_remote_debug_disabled_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(injection, "inspect_target", fake_314)
    monkeypatch.setattr(injection, "environment", lambda pid: {"PYTHON_DISABLE_REMOTE_DEBUG": "1"})
    monkeypatch.setattr(injection, "command_line", lambda pid: ["python3.14", "app.py"])

    def no_injection(*args: object) -> bool:
        raise AssertionError("must not try to inject")

    monkeypatch.setattr(injection, "inject_with_remote_exec", no_injection)
    monkeypatch.setattr(injection, "inject_with_gdb", no_injection)
    with pytest.raises(RemoteDebugDisabled, match=r"PYTHON_DISABLE_REMOTE_DEBUG.*restart it"):
        run_in_process(os.getpid(), "pass")


def test_314_target_uses_remote_exec_then_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(injection, "inspect_target", fake_314)
    monkeypatch.setattr(injection, "environment", lambda pid: {})
    monkeypatch.setattr(injection, "command_line", lambda pid: ["python3.14", "a.py"])
    monkeypatch.setattr(
        injection,
        "inject_with_remote_exec",
        lambda info, code, deadline: calls.append("remote_exec") or False,
    )
    monkeypatch.setattr(
        injection, "inject_with_gdb", lambda info, code, deadline: calls.append("gdb")
    )
    run_in_process(os.getpid(), "pass")
    assert calls == ["remote_exec", "gdb"]


def test_313_target_goes_straight_to_gdb(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(
        injection, "inspect_target", lambda pid: TargetInfo(pid, (3, 13), "x", None)
    )
    monkeypatch.setattr(
        injection,
        "inject_with_remote_exec",
        lambda info, code, deadline: calls.append("remote_exec") or True,
    )
    monkeypatch.setattr(
        injection, "inject_with_gdb", lambda info, code, deadline: calls.append("gdb")
    )
    run_in_process(os.getpid(), "pass")
    assert calls == ["gdb"]


@pytest.mark.skipif(
    VERSION >= (3, 14), reason="needs an interpreter older than 3.14; this one is 3.14+"
)
def test_remote_exec_declines_an_interpreter_of_another_version() -> None:
    # The runner, run by this (older) interpreter, notices it isn't 3.14 and steps aside.
    assert not remote_exec.inject_with_remote_exec(
        fake_314(os.getpid()), "pass", time.monotonic() + 10
    )


def test_matching_interpreter(tmp_path: Path) -> None:
    info = TargetInfo(1, (3, 14), "/opt/app/bin/server", "/nonexistent/lib/libpython3.14.so.1.0")
    assert matching_interpreter(info) in (None, shutil.which("python3.14"))
    own = TargetInfo(1, VERSION, sys.executable, None)
    assert matching_interpreter(own) == sys.executable


@pytest.mark.parametrize(
    ("returncode", "stderr", "error"),
    [
        (4, "EPERM [Errno 1] Operation not permitted", PtraceNotPermitted),
        (5, "ESRCH [Errno 3] No such process", TargetExited),
        (6, "RuntimeError Remote debugging is not enabled in the remote process",
         RemoteDebugDisabled),
        (6, "RuntimeError something else", InjectionError),
    ],
)  # fmt: skip
def test_remote_exec_failures(returncode: int, stderr: str, error: type[Exception]) -> None:
    failure = remote_exec.remote_exec_failure(os.getpid(), returncode, stderr)
    assert type(failure) is error
    assert "\n" not in str(failure)


def test_wrapped_code_never_raises_and_leaves_namespace_alone() -> None:
    namespace: dict[str, object] = {"__name__": "__main__", "keep": 1}
    for code in ("raise ValueError", "import sys; sys.exit(2)", "def (", "x = 1", "e = 5"):
        exec(payload.guarded(code), namespace)
    assert namespace.keys() == {"__name__", "keep", "__builtins__"}
