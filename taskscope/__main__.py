"""`python -m taskscope` and the `taskscope` command: `dump PID`'s requests sent ahead of the
imports (taskscope/early.py), then the command line (taskscope/cli)."""

from __future__ import annotations

import sys
from typing import NoReturn

from taskscope.early import send_ahead


def entry() -> NoReturn:
    send_ahead(sys.argv[1:])
    from taskscope.cli import main

    sys.exit(main())


if __name__ == "__main__":
    entry()
