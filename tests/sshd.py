"""A real OpenSSH server on loopback for the remote-host tests: its own host key, an authorized
key made for the test, a free port, started with `sshd -D` and stopped after.

`LoopbackSshd.start(directory)` raises `SshdUnavailable` (a reason to skip) when sshd, ssh or
ssh-keygen is missing or the server does not come up; CI installs openssh-server so it runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


class SshdUnavailable(Exception):
    """Why no test sshd could run here; str() is the skip reason."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )


@dataclass
class LoopbackSshd:
    """A running sshd and what a client needs to log in to it as the current user."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path
    client_key: Path
    known_hosts: Path

    @property
    def target(self) -> str:
        return f"ssh://127.0.0.1:{self.port}"

    def ssh_options(self) -> list[str]:
        """`--ssh-option` arguments for taskscope: this key, and no host-key questions."""
        options = [
            "StrictHostKeyChecking=no",
            f"UserKnownHostsFile={self.known_hosts}",
            f"IdentityFile={self.client_key}",
            "IdentitiesOnly=yes",
            "LogLevel=ERROR",
        ]
        return [part for option in options for part in ("--ssh-option", option)]

    @property
    def remote_command(self) -> str:
        """This interpreter, which has taskscope installed (ssh's shell has its own PATH)."""
        return f"{sys.executable} -m taskscope"

    def remote_args(self) -> list[str]:
        return [*self.ssh_options(), "--remote-command", self.remote_command]

    @classmethod
    def start(cls, directory: Path, timeout: float = 15.0) -> LoopbackSshd:
        sshd = next((path for path in SSHD_CANDIDATES if os.access(path, os.X_OK)), None)
        if sshd is None:
            raise SshdUnavailable("no sshd here (apt-get install openssh-server)")
        for tool in ("ssh", "ssh-keygen"):
            if shutil.which(tool) is None:
                raise SshdUnavailable(f"no {tool} here (apt-get install openssh-client)")
        directory.mkdir(parents=True, exist_ok=True)
        host_key, client_key = directory / "host_key", directory / "client_key"
        _keygen(host_key)
        _keygen(client_key)
        authorized = directory / "authorized_keys"
        authorized.write_text(client_key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        if os.geteuid() == 0:
            # Privilege separation needs this directory; it does not exist until sshd runs once.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        port = _free_port()
        config = directory / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {directory / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "StrictModes no",
                    "UsePAM no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        log = (directory / "sshd.log").open("wb")
        process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        log.close()
        server = cls(process, port, directory, client_key, directory / "known_hosts")
        deadline = time.monotonic() + timeout
        while not server._listening():
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                said = (directory / "sshd.log").read_text(errors="replace").strip()
                raise SshdUnavailable(f"sshd did not start: {said.splitlines()[-1:] or '?'}")
            time.sleep(0.05)
        return server

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as probe:
                # sshd's banner proves it is the one answering, not something else on the port.
                probe.settimeout(2.0)
                return probe.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
