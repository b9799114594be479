"""The live dashboard (`taskscope attach PID`): a Textual app over a task source.

`TaskscopeApp(source)` takes any `taskscope.sources.Source`; `run_dashboard(source)` runs the
app on one until the user quits.
"""
