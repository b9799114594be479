"""The live dashboard (`taskscope attach PID`): a Textual app over an injected task source.

`TaskscopeApp(source)` takes anything that follows `taskscope.ui.source.TaskSource`;
`run_dashboard(pid)` builds the real `AgentSource` and runs the app.
"""
