"""The exit statuses of the `taskscope` command, shared by its commands and `main`."""

from __future__ import annotations

EXIT_ERROR = 1
EXIT_USAGE = 2
#: ps, tree and dump on a process that runs no asyncio event loop.
EXIT_NO_LOOP = 3
#: lint: the process has warnings (they are printed, one a line).
EXIT_WARNINGS = 4
