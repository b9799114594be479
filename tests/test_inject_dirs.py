"""What an injection whose client gave up leaves in the temporary directory is removed by the
next injection, once nothing will read it (`taskscope.attach.gdb.sweep_stale_workdirs`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from taskscope.attach.gdb import STALE_WORKDIR_SECONDS, WORKDIR_PREFIX, private_dir


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _left(base: Path, pid: int, *files: str, age: float = 0.0) -> Path:
    """A directory as a client that gave up leaves it, its last file made `age` seconds ago."""
    directory = base / f"{WORKDIR_PREFIX}{pid}-{len(list(base.iterdir()))}"
    directory.mkdir(mode=0o700)
    for name in files:
        (directory / name).write_text("")
    stamp = time.time() - age
    os.utime(directory, (stamp, stamp))
    return directory


def test_the_next_injection_removes_only_what_nothing_will_read(tmp_path: Path) -> None:
    alive = os.getpid()
    # GIVEN what earlier injections left
    long_ago = 2 * STALE_WORKDIR_SECONDS
    dead = _dead_pid()
    target_gone = _left(tmp_path, dead, "inject.py", "claim", age=long_ago)
    target_just_gone = _left(tmp_path, dead, "inject.py", "gdb.out")  # its client still reads
    ran_long_ago = _left(tmp_path, alive, "inject.py", "claim", "done", age=long_ago)
    gdb_ran_long_ago = _left(tmp_path, alive, "done-gdb", age=long_ago)
    waiting_for_target = _left(tmp_path, alive, "inject.py", age=long_ago)
    just_ran = _left(tmp_path, alive, "inject.py", "claim", "done")
    (tmp_path / f"{WORKDIR_PREFIX}1-not-a-directory").write_text("")
    older_name = tmp_path / f"{WORKDIR_PREFIX}abc123"  # an older taskscope's: no pid in it
    older_name.mkdir()
    # WHEN another injection makes its directory there
    made = Path(private_dir(alive, str(tmp_path)))
    # THEN what nothing will read is gone; what a target or a client may still use stays
    assert made.is_dir() and made.name.startswith(f"{WORKDIR_PREFIX}{alive}-")
    assert oct(made.stat().st_mode & 0o777) == oct(0o700)
    assert not target_gone.exists()
    assert not ran_long_ago.exists()
    assert not gdb_ran_long_ago.exists()
    assert waiting_for_target.exists()  # its target may still run the script: it reads it
    assert just_ran.exists()  # its client may still be waiting for `done`
    assert target_just_gone.exists()  # its client may still read gdb's output
    assert (tmp_path / f"{WORKDIR_PREFIX}1-not-a-directory").exists()
    assert older_name.exists()
