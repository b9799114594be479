"""The `taskscope` command: list, ps, tree, dump, lint, metrics, exporter, cancel, stack, detach,
run, attach and demo.

Every error a user can meet is printed as one line on stderr with a non-zero exit status;
tracebacks are for bugs only.

Here: `main`, the table of commands and the last-resort error handling. The grammar is in
parser.py, where a snapshot comes from in sources.py, the commands in show.py (list, ps, tree,
dump, lint), tasks.py (stack, cancel, detach), exports.py (metrics, exporter, otel) and sessions.py
(record, replay, run, attach, bridge, demo); exits.py holds the exit statuses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from taskscope.cli.exits import (
    EXIT_ERROR as EXIT_ERROR,
    EXIT_NO_LOOP as EXIT_NO_LOOP,
    EXIT_USAGE as EXIT_USAGE,
)
from taskscope.cli.exports import cmd_exporter, cmd_metrics, cmd_otel
from taskscope.cli.parser import _split_target, build_parser as build_parser
from taskscope.cli.sessions import (
    cmd_attach,
    cmd_bridge,
    cmd_demo,
    cmd_record,
    cmd_replay,
    cmd_run,
)
from taskscope.cli.show import cmd_dump, cmd_lint, cmd_list, cmd_ps, cmd_tree
from taskscope.cli.sources import (
    NoEventLoop as NoEventLoop,
    open_source as open_source,
    recorded_snapshot as recorded_snapshot,
    take_snapshot as take_snapshot,
)
from taskscope.cli.tasks import (
    AmbiguousTask as AmbiguousTask,
    TaskNotFound as TaskNotFound,
    cmd_cancel,
    cmd_detach,
    cmd_stack,
    cmd_time_steps,
    resolve_task as resolve_task,
)
from taskscope.sources import ClientError

COMMANDS = {
    "list": cmd_list,
    "ps": cmd_ps,
    "tree": cmd_tree,
    "dump": cmd_dump,
    "lint": cmd_lint,
    "metrics": cmd_metrics,
    "exporter": cmd_exporter,
    "stack": cmd_stack,
    "cancel": cmd_cancel,
    "run": cmd_run,
    "detach": cmd_detach,
    "time-steps": cmd_time_steps,
    "otel": cmd_otel,
    "record": cmd_record,
    "attach": cmd_attach,
    "bridge": cmd_bridge,
    "replay": cmd_replay,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["run"]:
        # Everything after `run` belongs to the program, `-m` included.
        args = argparse.Namespace(command="run", target=arguments[1:])
    else:
        args = parser.parse_args(arguments)
        _split_target(parser, args)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except ClientError as error:
        print(f"taskscope: {error}", file=sys.stderr)
        return EXIT_ERROR
    except TaskNotFound as error:
        print(f"taskscope: {error}", file=sys.stderr)
        return EXIT_ERROR
    except NoEventLoop as error:
        print(f"taskscope: {error}", file=sys.stderr)
        return EXIT_NO_LOOP
    except AmbiguousTask as error:
        print(f"taskscope: {error}", file=sys.stderr)
        return EXIT_USAGE
    except _attach_errors() as error:
        print(f"taskscope: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _attach_errors() -> tuple[type[BaseException], ...]:
    try:
        from taskscope.attach.errors import InjectionError
    except ImportError:
        return ()
    return (InjectionError,)


def entry() -> None:  # pragma: no cover
    sys.exit(main())
