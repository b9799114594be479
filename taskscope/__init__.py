"""taskscope: see, understand and cancel the asyncio tasks of a running Python process.

Importing this package is cheap and pulls in only the standard library: the agent is loaded
when `install()` is called, and the dashboard only by the command line.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "install", "uninstall"]


def install(**options: Any) -> None:
    """Start the in-process agent (idempotent); see `taskscope.agent.install` for options."""
    from taskscope import agent

    agent.install(**options)


def uninstall() -> None:
    """Stop the in-process agent and restore everything it changed."""
    from taskscope import agent

    agent.uninstall()
