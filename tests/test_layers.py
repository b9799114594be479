"""The layers point one way: agent -> protocol -> client/model -> CLI and UI. The agent and
the protocol use the standard library only, and nothing below the UI imports it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "taskscope"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files(*relative: str) -> list[Path]:
    found: list[Path] = []
    for name in relative:
        path = PACKAGE / name
        found.extend(sorted(path.glob("*.py")) if path.is_dir() else [path])
    return found


def is_stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names or module == "__future__"


@pytest.mark.parametrize("path", files("agent", "protocol.py", "__init__.py"), ids=str)
def test_agent_side_uses_the_standard_library_only(path: Path) -> None:
    allowed_own = ("taskscope", "taskscope.agent", "taskscope.protocol")
    for module in imported_modules(path):
        if module.startswith("taskscope"):
            assert module in allowed_own or module.startswith("taskscope.agent."), (
                f"{path.name} imports {module}: the agent may only use the agent and protocol"
            )
        else:
            assert is_stdlib(module), f"{path.name} imports {module}, not in the standard library"


@pytest.mark.parametrize(
    "path", files("client.py", "model.py", "protocol.py", "report.py", "attach.py"), ids=str
)
def test_nothing_below_the_ui_imports_it(path: Path) -> None:
    for module in imported_modules(path):
        top = module.split(".")[0]
        assert top not in ("textual", "rich"), f"{path.name} imports {module}"
        assert module not in ("taskscope.ui", "taskscope.cli"), f"{path.name} imports {module}"
        assert not module.startswith("taskscope.ui."), f"{path.name} imports {module}"
