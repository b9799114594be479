"""The layers point one way, checked two ways: import-linter's contracts in pyproject.toml
(statically, every import of every module), and a real import of the agent in a fresh
interpreter, which must load nothing but the standard library and the agent's own modules."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports is not None, "import-linter is part of the test extra"
    result = subprocess.run(
        [lint_imports, "--no-cache"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module", ["taskscope.agent", "taskscope.protocol"])
def test_the_agent_side_loads_only_the_standard_library(module: str) -> None:
    # GIVEN a fresh interpreter WHEN the agent's side is imported and started
    code = (
        "import json, sys, sysconfig\n"
        "before = set(sys.modules)\n"
        f"import {module}\n"
        "stdlib = {sysconfig.get_paths()['stdlib'], sysconfig.get_paths()['platstdlib']}\n"
        "def from_stdlib(name):\n"
        "    path = getattr(sys.modules[name], '__file__', None) or ''\n"
        "    return any(path.startswith(folder) for folder in stdlib)\n"
        "print(json.dumps([n for n in sorted(set(sys.modules) - before) if not from_stdlib(n)]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    # THEN everything it loaded is the standard library (by name, or by where its file is:
    # Debian adds modules of its own) or taskscope's agent and protocol
    foreign = [
        name
        for name in loaded
        if name.split(".")[0] not in sys.stdlib_module_names
        and name != "taskscope"
        and not name.startswith(("taskscope.agent", "taskscope.protocol"))
    ]
    assert foreign == []
