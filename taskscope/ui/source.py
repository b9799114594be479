"""Where the dashboard's data comes from: the Source layer (`taskscope.sources`), under the
names the dashboard has used for it. `TaskscopeApp` takes any `Source`; `AgentSource` is the
live agent's."""

from __future__ import annotations

from taskscope.process_facts import ProcessFacts
from taskscope.sources.base import ProcessInfo, Source, Update
from taskscope.sources.live import LiveSource

#: The protocol the app is written against.
TaskSource = Source
#: The real source, over the agent's socket.
AgentSource = LiveSource

__all__ = ["AgentSource", "ProcessFacts", "ProcessInfo", "TaskSource", "Update"]
