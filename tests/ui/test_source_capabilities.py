"""The dashboard on a source that cannot do everything (a read-only look, a recording): it
says what it cannot do in one line instead of failing."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from taskscope.sources import Capability
from taskscope.ui.app import TaskscopeApp
from taskscope.ui.cancel_dialog import CancelDialog
from tests.ui.fakes import FakeSource
from tests.ui.harness import run_app, until


class ReadOnlyFake(FakeSource):
    """The fake, able to show tasks and nothing more, as a read-only look is."""

    capabilities = Capability.NONE


def test_cancel_on_a_source_that_cannot_cancel_says_so_in_one_line() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # GIVEN a pending task selected on a source without the CANCEL capability
        assert app.jump_to("4")
        # WHEN the user asks to cancel it
        await pilot.press("c")
        # THEN one line says why not, no dialog asks, and nothing is sent to the source
        await until(pilot, lambda: bool(app._notifications), what="the notice")
        notice = list(app._notifications)[-1]
        assert notice.title == "Cannot cancel"
        assert notice.message == (
            "process 4242 (fake) cannot cancel tasks: that needs the taskscope agent in the process"
        )
        assert not isinstance(app.screen, CancelDialog)
        assert source.cancelled == [] and app.cancels == []

    run_app(scenario, ReadOnlyFake())
