"""`python -m taskscope.cli`: the same as the `taskscope` command."""

from __future__ import annotations

import sys

from taskscope.cli import main

sys.exit(main())  # pragma: no cover
