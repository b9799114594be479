"""Which source to read a process through: the one place the CLI (and, later, the
dashboard) picks between the live agent and a read-only look, with today's fallback rules.

A new kind of source (a recording file, a remote host) is chosen here too, from what the
user named.
"""

from __future__ import annotations

from collections.abc import Callable

from taskscope.sources.base import (
    Capability,
    ProcessStopped,
    Source,
    Unsupported,
    stopped_process,
)
from taskscope.sources.live import open_live


def open_source(
    pid: int,
    *,
    timeout: float = 10.0,
    inject: bool = True,
    read_only: bool = False,
    needs: Capability = Capability.NONE,
    on_slow: Callable[[float], None] | None = None,
    on_read_only: Callable[[BaseException], None] | None = None,
    refused: BaseException | None = None,
) -> Source:
    """A source for `pid`: the live agent (loaded when needed and `inject`), or a read-only
    look when asked (`read_only`) or when the agent cannot be had and the target is 3.14+.
    The fallback is taken only when a read-only look can do what the caller `needs`; it is
    announced to `on_read_only` with the reason the agent could not be had. `refused`: why
    the agent could not be had, when the caller found out itself and asks for `read_only`."""
    refusal = refused
    if not read_only:
        try:
            stopped = stopped_process(pid)
            if stopped is not None:  # said at once, rather than after the whole wait
                raise stopped
            return open_live(pid, timeout=timeout, inject=inject, on_slow=on_slow)
        except _refusals() as error:
            if not read_only_can_stand_in(pid, error, needs):
                raise
            if on_read_only is not None:
                on_read_only(error)
            refusal = error
    # Imported only here: a read-only look brings the injector's modules (tens of ms).
    from taskscope.sources.readonly import ReadOnlySource

    source = ReadOnlySource(pid, timeout=timeout, stands_in=refusal)
    missing = needs & ~source.capabilities
    if missing:
        source.close()
        actions = " or ".join(text for flag, text in _ACTIONS.items() if flag in missing)
        raise Unsupported(
            f"a read-only look at process {pid} cannot {actions}: leave out --read-only"
        )
    return source


_ACTIONS = {
    Capability.CANCEL: "cancel a task",
    Capability.DETACH: "detach an agent",
    Capability.STACK_SOURCE: "show source lines",
    Capability.PUSH: "push updates",
    Capability.HISTORY: "show finished tasks",
}


def read_only_can_stand_in(pid: int, error: BaseException, needs: Capability) -> bool:
    """Whether a read-only look can stand in for the agent `pid` could not give (`error`,
    why): the target is 3.14+, the reason is one a read-only look is not stopped by (remote
    debugging turned off, an injection that outlasted the wait, no agent and --no-inject),
    and the caller `needs` nothing a read-only look cannot do."""
    from taskscope.sources.readonly import ReadOnlySource

    return (
        isinstance(error, _refusals())
        and not needs & ~ReadOnlySource.capabilities
        and _can_read_only(pid)
    )


def _refusals() -> tuple[type[BaseException], ...]:
    """Why an agent could not be had, where a read-only look still can be (a stopped
    process's memory can be read as well as a running one's)."""
    from taskscope.attach.errors import InjectionTimeout, RemoteDebugDisabled
    from taskscope.client import NoAgent

    return (NoAgent, RemoteDebugDisabled, InjectionTimeout, ProcessStopped)


def _can_read_only(pid: int) -> bool:
    from taskscope.attach.errors import InjectionError
    from taskscope.attach.target import REMOTE_EXEC_VERSION, inspect_target

    try:
        return inspect_target(pid).version >= REMOTE_EXEC_VERSION
    except InjectionError:
        return False
