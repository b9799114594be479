"""Remote hosts (`taskscope COMMAND ssh://HOST PID`) through a real OpenSSH server on loopback:
ps, tree, dump and stack say what the local commands say, cancel and detach take effect in the
target, record writes the target's tasks, the dashboard in tmux shows them, and a wrong host,
a host without taskscope and a pid that does not exist each give one line."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskscope.cli import build_parser, main
from taskscope.recording import RecordingError, open_recording
from taskscope.remote import RemoteHost, parse_target
from taskscope.words import WAIT_BOUND_NOTE
from tests.helpers import REPO, notes, run_cli, wait_for
from tests.sshd import LoopbackSshd, SshdUnavailable


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSshd]:
    try:
        server = LoopbackSshd.start(tmp_path_factory.mktemp("sshd"))
    except SshdUnavailable as reason:
        pytest.skip(f"remote-host tests need a local sshd: {reason}")
    try:
        yield server
    finally:
        server.stop()


def remote(
    sshd: LoopbackSshd, command: str, pid: int, *rest: str
) -> subprocess.CompletedProcess[str]:
    """`taskscope COMMAND ssh://127.0.0.1:PORT PID REST...`, with the test's key and command."""
    return run_cli(command, sshd.target, str(pid), *rest, *sshd.remote_args(), timeout=60)


def comparable(text: str) -> list[str]:
    """Lines with every number, unit and run of spaces made alike: two looks a moment apart
    differ in ages, lags and times left, and the columns those widths set; and a sleep's
    countdown said or not (a look that comes as the timer fires, before the task wakes, finds
    no timer to count down to: the service's stopper sleeps 50 ms at a time); and a wait
    known only from the looks, said from 1 s on (`WAIT_SHOWN`), with its note."""
    text = re.sub(r"\d+(\.\d+)?\s?(ms|µs|s|m|h)?\b", "N", text)
    text = re.sub(r"\bsleep(, (N left|overdue N))?", "sleep", text)
    text = re.sub(r", for ≥N|(?<= )≥N(?= )| WAITED\b", "", text)
    lines = [re.sub(r"\s+", " ", line).strip() for line in text.splitlines()]
    return [line for line in lines if line != WAIT_BOUND_NOTE]


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("taskscope: ") and "Traceback" not in result.stderr
    return lines[0]


# --- targets ----------------------------------------------------------------------------------


def test_ssh_targets_are_read_in_one_place() -> None:
    assert parse_target("ssh://box") == RemoteHost("box")
    assert parse_target("ssh://ops@box.example:2222") == RemoteHost("box.example", "ops", 2222)
    assert parse_target("ssh://[::1]:22").destination == "::1"
    assert str(parse_target("ssh://ops@box:2222")) == "ssh://ops@box:2222"
    for bad in ("ssh://", "ssh://box:99999", "ssh://a/b", "ssh://box:port"):
        with pytest.raises(ValueError, match="ssh"):
            parse_target(bad)


def test_a_plain_pid_parses_as_before_and_a_host_needs_a_pid(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    args = parser.parse_args(["stack", "123", "18"])
    assert (args.pid, args.remote_pid, args.task) == (123, None, "18")
    args = parser.parse_args(["stack", "ssh://ops@box", "123", "18"])
    assert (args.pid, args.remote_pid, args.task) == (RemoteHost("box", "ops"), 123, "18")
    with pytest.raises(SystemExit):
        main(["ps", "ssh://box"])
    assert "ssh://box needs the process id after it" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ps", "12", "13"])
    assert "unrecognized arguments: 13" in capsys.readouterr().err


# --- through a real sshd ----------------------------------------------------------------------


def test_ps_tree_dump_and_stack_through_ssh_say_what_the_local_commands_say(
    sshd: LoopbackSshd, start: Any
) -> None:
    # GIVEN a service with workers, a sleeper and a victim, on "the remote host"
    target = start("service.py").wait_ready()
    for command, extra in (("ps", ["-a"]), ("tree", ["-a"]), ("stack", ["victim"])):
        # WHEN the command runs through ssh and here
        over_ssh = remote(sshd, command, target.pid, *extra)
        here = run_cli(command, str(target.pid), *extra)
        # THEN both say the same, but for the moment each looked
        assert over_ssh.returncode == 0, over_ssh.stderr
        assert over_ssh.stderr == ""
        assert comparable(over_ssh.stdout) == comparable(here.stdout), command
    over_ssh = json.loads(remote(sshd, "dump", target.pid).stdout)
    here = json.loads(run_cli("dump", str(target.pid)).stdout)
    assert (over_ssh["pid"], over_ssh["python"]) == (target.pid, sys.version.split()[0])

    def tasks(snapshot: dict[str, Any]) -> list[tuple[Any, ...]]:
        return sorted((t["id"], t["name"], t["state"], t["coro"]) for t in snapshot["tasks"])

    assert tasks(over_ssh) == tasks(here)
    assert {task[1] for task in tasks(here)} >= {"victim", "sleeper", "worker-0"}


def test_cancel_through_ssh_reaches_the_task(sshd: LoopbackSshd, start: Any) -> None:
    target = start("service.py").wait_ready()
    result = remote(sshd, "cancel", target.pid, "victim")
    assert result.returncode == 0, result.stderr
    assert "cancel requested for task" in result.stdout
    assert f"`taskscope ps {sshd.target} {target.pid}` shows the outcome" in result.stdout
    wait_for(lambda: "victim cancelled" in notes(target), what="the victim's CancelledError")


def test_an_agent_is_loaded_over_ssh_and_detached_over_ssh(sshd: LoopbackSshd, start: Any) -> None:
    # GIVEN a program started without taskscope
    target = start("service.py", agent=False).wait_ready()
    # WHEN tree runs through ssh, the remote end loads the agent as `tree` does here
    assert "victim" in remote(sshd, "tree", target.pid).stdout
    # AND detach through ssh stops it
    result = remote(sshd, "detach", target.pid)
    assert result.returncode == 0, result.stderr
    assert f"agent stopped in process {target.pid} on {sshd.target}" in result.stdout
    # THEN the process has no agent any more, and --no-inject through ssh says so in one line
    refused = one_line_error(remote(sshd, "ps", target.pid, "--no-inject"))
    assert f"{sshd.target}: process {target.pid} has no taskscope agent" in refused
    assert target.process.poll() is None


def test_no_event_loop_over_ssh_says_so_and_unloads_what_it_loaded(
    sshd: LoopbackSshd, start: Any, socket_dir: str
) -> None:
    # GIVEN a Python program that runs no asyncio, without an agent
    target = start("no_asyncio.py", agent=False).wait_ready()
    # WHEN tree looks at it through ssh (the remote end loads the agent to look)
    result = remote(sshd, "tree", target.pid)
    # THEN it says so as the local command does, exit status 3
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert result.stderr.strip() == (
        f"taskscope: no event loop in process {target.pid}: it runs no asyncio (yet); "
        "the agent loaded to look was unloaded again"
    )
    # AND the agent it loaded is gone again
    wait_for(
        lambda: not os.path.exists(os.path.join(socket_dir, f"{target.pid}.sock")),
        what="the agent's socket to go",
    )
    assert target.stop()[0] == 0


def test_record_through_ssh_writes_the_remote_tasks(
    sshd: LoopbackSshd, start: Any, tmp_path: Path
) -> None:
    target = start("service.py").wait_ready()
    output = tmp_path / "remote.tsrec"
    result = remote(
        sshd, "record", target.pid, "-o", str(output), "--duration", "1", "--interval", "0.2"
    )
    assert result.returncode == 0, result.stderr
    snapshot = open_recording(output).snapshot_at(None)
    assert snapshot["pid"] == target.pid
    assert "victim" in {task["name"] for task in snapshot["tasks"]}


def _updates_in(path: Path) -> int:
    """Updates in a recording being written (0 before its header, or before its first)."""
    try:
        return len(open_recording(path).chunks)
    except RecordingError:
        return 0


def test_a_remote_recording_ends_with_the_process(
    sshd: LoopbackSshd, start: Any, tmp_path: Path
) -> None:
    # GIVEN a recording through ssh, with no duration
    target = start("service.py").wait_ready()
    output = tmp_path / "until-exit.tsrec"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    recording = subprocess.Popen(
        [
            *(sys.executable, "-m", "taskscope", "record", sshd.target, str(target.pid)),
            *("-o", str(output), "--interval", "0.2", *sshd.remote_args()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for(lambda: _updates_in(output) > 0, 30, "the first update")
        # WHEN the process ends (service.py's status is 3)
        assert target.stop()[0] == 3
        # THEN the recording ends by itself, saying why, and what it wrote reads back
        _out, err = recording.communicate(timeout=30)
    finally:
        if recording.poll() is None:
            recording.kill()
            recording.communicate()
    assert recording.returncode == 0, err
    assert f"process {target.pid} ended; recorded" in err
    assert "victim" in {task["name"] for task in open_recording(output).snapshot_at(None)["tasks"]}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_host_that_does_not_answer_says_so_in_one_line(sshd: LoopbackSshd, start: Any) -> None:
    target = start("service.py").wait_ready()
    port = _closed_port()  # nothing listens there once the probe is closed
    result = run_cli(
        "ps", f"ssh://127.0.0.1:{port}", str(target.pid), *sshd.remote_args(), timeout=60
    )
    line = one_line_error(result)
    assert line.startswith(f"taskscope: cannot reach ssh://127.0.0.1:{port} over ssh:"), line
    assert "Connection refused" in line


def test_a_wrong_key_is_an_ssh_refusal_in_one_line(sshd: LoopbackSshd, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    options = [arg.replace(str(sshd.client_key), str(stranger)) for arg in sshd.remote_args()]
    line = one_line_error(run_cli("ps", sshd.target, "1", *options, timeout=60))
    assert f"cannot reach {sshd.target} over ssh: " in line and "Permission denied" in line


def test_a_host_without_taskscope_says_how_to_name_it(sshd: LoopbackSshd, start: Any) -> None:
    target = start("service.py").wait_ready()
    command = "/nonexistent/python3 -m taskscope"
    result = run_cli(
        "tree",
        sshd.target,
        str(target.pid),
        *sshd.ssh_options(),
        "--remote-command",
        command,
        timeout=60,
    )
    line = one_line_error(result)
    assert f"taskscope is not installed on {sshd.target} (`{command}` failed" in line
    assert "--remote-command or $TASKSCOPE_REMOTE_COMMAND" in line


def test_the_remote_command_can_come_from_the_environment(sshd: LoopbackSshd, start: Any) -> None:
    target = start("service.py").wait_ready()
    env = dict(os.environ, PYTHONPATH=str(REPO), TASKSCOPE_REMOTE_COMMAND=sshd.remote_command)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskscope",
            "ps",
            sshd.target,
            str(target.pid),
            *sshd.ssh_options(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "victim" in result.stdout


def test_a_pid_that_is_not_there_says_so_in_one_line(sshd: LoopbackSshd) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    line = one_line_error(remote(sshd, "ps", dead.pid))
    assert line == f"taskscope: {sshd.target}: no process with pid {dead.pid}"


def test_read_only_is_refused_for_a_remote_process_in_one_line(sshd: LoopbackSshd) -> None:
    line = one_line_error(remote(sshd, "ps", 1, "--read-only"))
    assert "--read-only reads the memory of a process on this host" in line


def test_the_bridge_writes_only_the_protocol_to_stdout(start: Any) -> None:
    # The remote end alone (no ssh): a hello in, exactly one reply line out, nothing else.
    target = start("service.py").wait_ready()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "taskscope", "bridge", str(target.pid)],
        input=b'{"type": "hello", "id": 1, "protocol": 1}\n',
        capture_output=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert json.loads(line)["re"] == 1


# --- the dashboard over ssh, in a real terminal -------------------------------------------------


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_dashboard_over_ssh_shows_the_remote_tasks(sshd: LoopbackSshd, start: Any) -> None:
    from tests.ui.test_tmux_e2e import Terminal, detail_title

    target = start("service.py").wait_ready()
    terminal = Terminal("remote-attach")
    try:
        env = {"PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
        command = [
            sys.executable,
            *("-m", "taskscope", "attach", sshd.target, str(target.pid)),
            *sshd.remote_args(),
        ]
        # tmux hands the line to a shell: the remote command has spaces in it.
        terminal.start([shlex.quote(word) for word in command], env)
        screen = wait_for(
            lambda: (lambda text: text if "victim" in text and "worker-2" in text else "")(
                terminal.screen()
            ),
            30,
            "the remote tasks on screen",
        )
        # The header names the host instead of this host's facts of a pid that is not here.
        assert f"remote {sshd.target}" in screen
        assert "RSS" not in screen and "CPU" not in screen
        # A cancel from the dashboard goes through ssh too: find the victim, c, y.
        terminal.keys("/")
        wait_for(lambda: "filter by name" in terminal.screen(), 10, "the filter box")
        terminal.keys("victim", "Enter")
        wait_for(lambda: detail_title(terminal.screen()) == "victim", 10, "the victim selected")
        terminal.keys("c")
        wait_for(lambda: "[y/N]" in terminal.screen(), 10, "the cancel confirmation")
        terminal.keys("y")
        wait_for(lambda: "victim cancelled" in notes(target), 15, "the victim's CancelledError")
        terminal.keys("q")
        wait_for(lambda: not terminal.alive(), 15, "the dashboard to exit")
        assert target.process.poll() is None
    finally:
        terminal.kill()
