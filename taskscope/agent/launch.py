"""`python -m taskscope.agent.launch script.py args` / `-m module args`: run a program with the
agent installed before its first line, the way `python -m cProfile` runs one.

`taskscope run` execs this module, so the program runs in a fresh interpreter that has loaded
nothing but the standard library and the agent.
"""

from __future__ import annotations

import builtins
import os
import runpy
import sys
import types

USAGE = (
    "usage: taskscope run [--history N] [--no-track] [--flight-recorder S] "
    "[--stall-threshold S] [--time-steps] (script.py | -m module) [args...]\n"
    "  --history N   remember the last N finished tasks (default 1000)\n"
    "  --no-track    note nothing per task: no creators, no history, no per-task cost\n"
    "  --flight-recorder S   keep the last S seconds in memory, for `taskscope record PID "
    "--last`\n"
    "  --stall-threshold S   keep the steps that hold the loop longer than S seconds "
    "(default 0.1)\n"
    "  --time-steps  time every step: busy time and steps per task and loop (costs the loop "
    "0.5-1 microsecond per step)"
)


def main(argv: list[str]) -> int:
    options: dict[str, object] = {}
    while argv and argv[0].startswith("--"):
        option, argv = argv[0], argv[1:]
        if option == "--no-track":
            options["track_tasks"] = False
        elif option == "--history" and argv and argv[0].isdigit():
            options["history"], argv = int(argv[0]), argv[1:]
        elif option == "--flight-recorder" and argv and _seconds(argv[0]) is not None:
            options["flight_recorder"], argv = _seconds(argv[0]), argv[1:]
        elif option == "--stall-threshold" and argv and _seconds(argv[0]) is not None:
            options["stall_threshold"], argv = _seconds(argv[0]), argv[1:]
        elif option == "--time-steps":
            options["time_steps"] = True
        elif option == "--help":
            print(USAGE)
            return 0
        else:
            print(f"taskscope run: bad option {option!r}\n{USAGE}", file=sys.stderr)
            return 2
    if not argv or argv[0] == "-h":
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "-m":
        if len(argv) < 2:
            print("taskscope run: -m needs a module name", file=sys.stderr)
            return 2
        module, args = argv[1], argv[2:]
        sys.argv = [module, *args]
        sys.path[0] = os.getcwd()
        target = ("module", module)
    else:
        script, args = argv[0], argv[1:]
        if not os.path.exists(script):
            print(f"taskscope run: no such file: {script}", file=sys.stderr)
            return 2
        sys.argv = [script, *args]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        target = ("path", script)

    from taskscope.agent import install

    install(**options)  # type: ignore[arg-type]
    # Leave no trace of the launcher in what the program sees as __main__.
    if target[0] == "module":
        runpy.run_module(target[1], run_name="__main__", alter_sys=True)
    else:
        _run_script(target[1])
    return 0


def _run_script(script: str) -> None:
    """Run a script as `python script.py` does (3.9+): `__file__` and its code's file name
    (what tracebacks print) absolute, sys.argv[0] as given, a `__main__` module of its own
    in sys.modules, kept after it ends. (`runpy.run_path` would give sys.argv[0] the path
    it is passed.) A directory or a zip file with a `__main__.py` goes to runpy."""
    path = os.path.abspath(script)
    if not os.path.isfile(path) or zipfile_like(path):
        runpy.run_path(script, run_name="__main__")
        return
    import io
    from importlib.machinery import SourceFileLoader

    with io.open_code(path) as handle:
        source = handle.read()
    code = compile(source, path, "exec", dont_inherit=True)
    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__cached__ = None  # type: ignore[attr-defined]
    module.__loader__ = SourceFileLoader("__main__", path)
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    exec(code, module.__dict__)


def zipfile_like(path: str) -> bool:
    """Whether `path` is a zip archive (`python app.pyz`), by its magic number."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _seconds(text: str) -> float | None:
    """A positive number of seconds, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value < float("inf") else None


def _program_traceback(exc: BaseException) -> types.TracebackType | None:
    """The traceback from the program's first frame on, as plain `python` would print it."""
    ours = {main.__code__.co_filename, runpy.run_path.__code__.co_filename}
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in ours:
        tb = tb.tb_next
    return tb


def _trim_when_printed() -> None:
    """Have the program's excepthook (the default, or its own) print the traceback from the
    program's first frame, once: for a KeyboardInterrupt, which must go on up so that Python
    ends as it does for a plain script (finalized, then killed by SIGINT)."""
    hook = sys.excepthook

    def print_trimmed(
        kind: type[BaseException], value: BaseException, tb: types.TracebackType | None
    ) -> None:
        sys.excepthook = hook
        trimmed = _program_traceback(value)
        hook(kind, value.with_traceback(trimmed), trimmed)

    sys.excepthook = print_trimmed


if __name__ == "__main__":
    try:
        status = main(sys.argv[1:])
    except SystemExit:
        raise
    except KeyboardInterrupt:
        _trim_when_printed()
        raise
    except BaseException as error:
        trimmed = _program_traceback(error)
        sys.excepthook(type(error), error.with_traceback(trimmed), trimmed)
        status = 1
    sys.exit(status)
