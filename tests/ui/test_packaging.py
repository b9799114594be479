"""The dashboard's place in the layers, and the demo program's two copies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import taskscope.demo

REPO = Path(__file__).resolve().parents[2]


def test_the_readable_demo_is_the_packaged_one() -> None:
    # The wheel ships taskscope/examples_data/demo_service.py; examples/ links to it.
    readable = REPO / "examples" / "demo_service.py"
    assert readable.read_text() == taskscope.demo.DEMO_PROGRAM.read_text()


def test_layers_below_the_ui_do_not_import_it() -> None:
    code = (
        "import sys, taskscope.model, taskscope.client, taskscope.protocol, taskscope.report, "
        "taskscope.cli, taskscope.demo; "
        "print(sorted(m for m in sys.modules if m.startswith(('taskscope.ui', 'textual'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"
