"""The addresses the gdb injection calls functions at, read by taskscope from the target's
mapped files: they must be where gdb itself finds those symbols, since gdb no longer reads
any while the target is stopped."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskscope.attach import gdb_script
from taskscope.attach.target import inspect_target

TARGET = Path(__file__).parent / "targets" / "injection_target.py"

pytestmark = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")


@pytest.fixture
def idle_target(tmp_path: Path) -> Iterator[int]:
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, str(TARGET), "idle", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert process.poll() is None, "the target exited early"
        assert time.monotonic() < deadline, "the target never became ready"
        time.sleep(0.01)
    yield process.pid
    process.kill()
    process.wait()


def gdb_addresses(pid: int, symbols: list[str]) -> dict[str, int]:
    """Where gdb, attached the ordinary way with every symbol loaded, says each symbol is."""
    commands: list[str] = []
    for symbol in symbols:
        # The name by gdb's echo: a string argument to printf is written into the target's
        # memory, which some kernels refuse gdb ("Couldn't write extended state status").
        commands += ["-ex", f"echo TS {symbol}=", "-ex", f'printf "%lx\\n", (long)&{symbol}']
    output = subprocess.run(
        ["gdb", "-nx", "-batch", "-readnever", "-p", str(pid), *commands],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return {
        name: int(value, 16) for name, value in re.findall(r"^TS (\S+)=([0-9a-f]+)$", output, re.M)
    }


def test_function_addresses_are_where_gdb_finds_the_symbols(idle_target: int) -> None:
    # GIVEN a running Python process
    info = inspect_target(idle_target)
    # WHEN taskscope reads the addresses of the functions its gdb script calls
    addresses = gdb_script.function_addresses(info)
    # THEN every one is found, at the address gdb gives the symbol
    assert addresses is not None
    finalizing = "Py_IsFinalizing" if info.version >= (3, 13) else "_Py_IsFinalizing"
    by_symbol = {
        (finalizing if name == "finalizing" else name): at for name, at in addresses.items()
    }
    assert set(by_symbol) == {*gdb_script.GDB_FUNCTIONS, finalizing}
    assert gdb_addresses(idle_target, sorted(by_symbol)) == by_symbol


def test_script_with_addresses_names_no_symbol(idle_target: int, tmp_path: Path) -> None:
    # GIVEN the addresses of the functions in a real target
    info = inspect_target(idle_target)
    addresses = gdb_script.function_addresses(info)
    assert addresses is not None
    # WHEN the gdb script is made with them
    scripts = gdb_script.gdb_scripts(
        info, str(tmp_path / "payload"), b"x" * 100, queue=True, addresses=addresses
    )
    script = scripts.prelude + scripts.script
    # THEN it takes no symbol's address (gdb has none loaded for the shared libraries)
    assert re.search(r"&\s*[A-Za-z_]", script) is None
    assert f"set $ts_f_ensure = {addresses['PyGILState_Ensure']:#x}" in script
