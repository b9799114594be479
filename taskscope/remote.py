"""Remote hosts: `taskscope COMMAND ssh://[user@]host[:port] PID`.

taskscope runs on the remote host as `taskscope bridge PID` under ssh, connects to the agent
there (loading it when needed, as `ps` does) and relays bytes between ssh's standard streams
and the agent's Unix socket. On this side ssh is a subprocess whose stdin and stdout are one
end of a socket pair; an `AgentClient` speaks the usual protocol over the other end. Nothing
listens on a network port: ssh carries everything, with the user's own keys and config.

This module holds both ends: parsing the `ssh://` target, starting ssh, turning what ssh says
on stderr into one line, and the relay loop of the remote end.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shlex
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Any

from taskscope.client import AgentClient, AgentGone, ClientError
from taskscope.protocol import HelloReply

SCHEME = "ssh://"
#: The remote end's command line, up to `bridge`: run by the remote user's shell.
REMOTE_COMMAND_ENV = "TASKSCOPE_REMOTE_COMMAND"
DEFAULT_REMOTE_COMMAND = "python3 -m taskscope"
#: How long to wait for ssh to say why the stream ended, once it has.
SSH_EXIT_WAIT = 3.0

_HOST_PART = re.compile(
    r"^(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]/]+\]|[^:@/\[\]]+)(?::(?P<port>\d+))?$"
)


class BadTarget(ValueError):
    """An `ssh://` target that cannot be read; str() says what is wrong."""


@dataclass(frozen=True)
class RemoteHost:
    """Where a remote process runs: an ssh destination and port."""

    host: str
    user: str | None = None
    port: int | None = None

    @property
    def destination(self) -> str:
        """What ssh takes as its destination argument (`user@host`)."""
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return f"{self.user}@{host}" if self.user else host

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{SCHEME}{user}{self.host}{port}"


def is_remote(text: str) -> bool:
    return text.startswith(SCHEME)


def parse_target(text: str) -> RemoteHost:
    """`ssh://[user@]host[:port]` (an IPv6 address in brackets) as a RemoteHost."""
    if not is_remote(text):
        raise BadTarget(f"not an ssh target: {text!r} (expected ssh://[user@]host[:port])")
    rest = text[len(SCHEME) :].rstrip("/")
    match = _HOST_PART.match(rest)
    if match is None or match["host"] in ("", "[]"):
        raise BadTarget(f"not an ssh target: {text!r} (expected ssh://[user@]host[:port])")
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise BadTarget(f"not a TCP port in {text!r}: {port}")
    return RemoteHost(match["host"], match["user"], int(port) if port is not None else None)


@dataclass(frozen=True)
class SshSettings:
    """How to reach the remote end: the remote command and the ssh options (`-o` values)."""

    remote_command: str = DEFAULT_REMOTE_COMMAND
    options: tuple[str, ...] = ()
    #: No prompts (passwords, host keys): for connections made while the dashboard owns the
    #: terminal, where a prompt could not be seen.
    batch: bool = False

    @classmethod
    def from_user(
        cls, remote_command: str | None, options: list[str] | None, batch: bool = False
    ) -> SshSettings:
        command = remote_command or os.environ.get(REMOTE_COMMAND_ENV) or DEFAULT_REMOTE_COMMAND
        return cls(command, tuple(options or ()), batch)


def ssh_command(
    host: RemoteHost, settings: SshSettings, bridge_args: list[str], timeout: float
) -> list[str]:
    """The ssh command line that runs `<remote command> bridge ARGS` on `host`. The user's
    options come first: ssh keeps the first value it gets for an option."""
    command = ["ssh", "-T"]
    for option in settings.options:
        command += ["-o", option]
    command += ["-o", f"ConnectTimeout={max(1, round(timeout))}"]
    if settings.batch:
        command += ["-o", "BatchMode=yes"]
    if host.port is not None:
        command += ["-p", str(host.port)]
    remote = f"{settings.remote_command} bridge {shlex.join(bridge_args)}"
    return [*command, "--", host.destination, remote]


class RemoteClient(AgentClient):
    """An `AgentClient` whose agent runs on another host, reached through ssh running
    `taskscope bridge PID` there. Everything but the transport is the usual client."""

    def __init__(
        self,
        host: RemoteHost,
        pid: int,
        *,
        settings: SshSettings,
        timeout: float = 10.0,
        no_inject: bool = False,
        **options: Any,
    ) -> None:
        self.host = host
        self.settings = settings
        self.no_inject = no_inject
        self._ssh: subprocess.Popen[bytes] | None = None
        #: When ssh was started (this host's monotonic clock).
        self._began: float | None = None
        self._ssh_stderr: IO[bytes] | None = None
        ours, theirs = socket.socketpair()
        self._theirs: socket.socket | None = theirs
        super().__init__(pid, timeout=timeout, connected=ours, **options)
        self.path = f"{host} process {pid}"

    def connect(self) -> HelloReply:
        if self._sock is not None:
            return self.hello  # `with connect(args) as client:` enters a connected client
        args = ["--timeout", f"{self.timeout:g}", *(["--no-inject"] if self.no_inject else [])]
        command = ssh_command(self.host, self.settings, [*args, str(self.pid)], self.timeout)
        theirs, self._theirs = self._theirs, None
        assert theirs is not None, "a RemoteClient connects once"
        # Kept for the life of the connection (read when it ends), closed by close().
        self._ssh_stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._began = time.monotonic()
        try:
            self._ssh = subprocess.Popen(
                command,
                stdin=theirs.fileno(),
                stdout=theirs.fileno(),
                stderr=self._ssh_stderr,
            )
        except FileNotFoundError:
            raise ClientError(
                f"cannot reach {self.host}: there is no ssh command here (install openssh-client)"
            ) from None
        finally:
            theirs.close()
        # The first answer waits for ssh and for the agent to be loaded there: not the
        # process keeping its agent from running, which is what `on_slow` tells.
        # It may take ssh's connect timeout plus the bridge's own wait for the agent.
        on_slow, self.on_slow = self.on_slow, None
        timeout, self.timeout = self.timeout, 2 * self.timeout
        try:
            return super().connect()
        except AgentGone as error:
            # A silent ssh (a host that drops packets) ends as a timeout: say so.
            if "did not answer" in str(error):
                self.close()
                raise AgentGone(
                    f"{self.host} did not answer within {self.timeout:g} s (ssh, or taskscope "
                    f"on that host, is still waiting): check the host, or give --timeout"
                ) from None
            raise
        except ClientError:
            self.close()
            raise
        finally:
            self.on_slow, self.timeout = on_slow, timeout

    def loaded_for_us(self, taken_at: float) -> bool:
        """Whether the agent started after this connection began: the bridge loaded it for
        this look. Judged on the remote's clock alone (its start, and a snapshot's `taken_at`
        just received) against the time passed here, so the two clocks may disagree."""
        started_at = self.hello.get("started_at")
        if self._began is None or not isinstance(started_at, int | float):
            return False
        return taken_at - started_at <= time.monotonic() - self._began

    def wait_hangup(self, timeout: float) -> bool:
        """Whether the remote end closes the connection within `timeout` seconds (after a
        detach, the agent hangs up, and the bridge and ssh end)."""
        if self._ssh is None:
            return False
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._ssh.wait(timeout)
            return True
        return False

    def close(self) -> None:
        super().close()
        ssh, self._ssh = self._ssh, None
        if ssh is not None:
            # Its stdin ended: ssh closes the channel, the bridge ends, and so does ssh.
            try:
                ssh.wait(1.0)
            except subprocess.TimeoutExpired:
                ssh.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    ssh.wait(2.0)
        if self._ssh_stderr is not None:
            self._ssh_stderr.close()
            self._ssh_stderr = None

    def _gone(self, error: OSError | None) -> ClientError:
        return AgentGone(
            self._ssh_failure()
            or f"the agent of process {self.pid} on {self.host} closed the connection"
        )

    def _ssh_failure(self) -> str | None:
        """Why the stream ended, in one line, from ssh's exit status and its stderr (where
        the bridge's own one-line errors arrive too)."""
        ssh = self._ssh
        if ssh is None or self._ssh_stderr is None:
            return None
        try:
            status = ssh.wait(SSH_EXIT_WAIT)
        except subprocess.TimeoutExpired:
            return None
        self._ssh_stderr.seek(0)
        text = self._ssh_stderr.read(1 << 16).decode(errors="replace")
        return explain_ssh_failure(self.host, self.settings.remote_command, status, text)


#: ssh's chatter that is not the reason for anything.
_NOISE = re.compile(r"^(Warning: Permanently added|\*\*|Connection to .* closed)")
#: What a remote shell or Python says when the remote command is not there.
_MISSING = re.compile(r"command not found|No such file or directory|No module named|not found$")


def explain_ssh_failure(
    host: RemoteHost, remote_command: str, status: int, stderr: str
) -> str | None:
    """One line for a failed ssh run of the bridge, or None when nothing failed."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line for line in lines if not _NOISE.match(line)]
    for line in reversed(said):
        if line.startswith("taskscope: "):
            return f"{host}: {line.removeprefix('taskscope: ')}"
    last = said[-1] if said else ""
    if status == 255:
        reason = last.removeprefix("ssh: ") or "ssh failed"
        return f"cannot reach {host} over ssh: {reason}"
    if status == 127 or (status != 0 and _MISSING.search(last)):
        return (
            f"taskscope is not installed on {host} (`{remote_command}` failed: "
            f"{last or f'exit status {status}'}): install it there, or give the command that "
            f"runs it with --remote-command or ${REMOTE_COMMAND_ENV}"
        )
    if status != 0:
        return f"taskscope on {host} failed (exit status {status}){': ' + last if last else ''}"
    return None


def relay(agent: socket.socket, incoming: int, outgoing: int, linger: float = 5.0) -> None:
    """Copy bytes from fd `incoming` to `agent` and from `agent` to fd `outgoing` until
    either side closes (the remote end of the ssh transport). When `incoming` ends first, the
    agent's answers to what was sent are still passed on, for up to `linger` seconds."""
    agent.setblocking(True)
    selector = selectors.DefaultSelector()
    selector.register(incoming, selectors.EVENT_READ, "in")
    selector.register(agent, selectors.EVENT_READ, "agent")
    deadline: float | None = None
    try:
        while True:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return
            for key, _events in selector.select(wait):
                if key.data == "in":
                    data = os.read(incoming, 1 << 16)
                    if data:
                        agent.sendall(data)
                        continue
                    # The client is done: the agent answers what it has, then hangs up.
                    selector.unregister(incoming)
                    with contextlib.suppress(OSError):
                        agent.shutdown(socket.SHUT_WR)
                    deadline = time.monotonic() + linger
                else:
                    data = agent.recv(1 << 20)
                    if not data:
                        return
                    view = memoryview(data)
                    while view:
                        view = view[os.write(outgoing, view) :]
    finally:
        selector.close()
