"""The commands that show: list (Python processes), ps, tree, dump and lint (a process's tasks
and warnings)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from taskscope.cli.exits import EXIT_WARNINGS
from taskscope.cli.sources import shown_now, take_rows, take_snapshot
from taskscope.client import has_agent_socket, live_agents
from taskscope.protocol import CompactSnapshot, terminal_safe_json
from taskscope.sources import ClientError
from taskscope.words import (
    fill_texts,
    finding_text,
    letter_of,
    named_object,
    object_letters,
    schema_text,
)

if TYPE_CHECKING:
    from taskscope.protocol import WireSnapshot, WireWarning


def cmd_list(args: argparse.Namespace) -> int:
    from taskscope.process_facts import parent_pid, python_processes

    agents = set(live_agents())
    rows: list[tuple[str, str, str, str]] = []
    listed: set[int] = set()
    for proc in python_processes():
        listed.add(proc.pid)
        rows.append(
            (
                str(proc.pid),
                proc.version or "?",
                "agent" if proc.pid in agents or has_agent_socket(proc.pid) else "-",
                proc.command,
            )
        )
    rows.extend((str(pid), "?", "agent", _command_line(pid)) for pid in sorted(agents - listed))
    if not rows:
        print("no Python processes found")
        return 0
    rows.sort(key=lambda row: (row[2] != "agent", int(row[0])))
    print(f"{'PID':>7}  {'PYTHON':7}  {'AGENT':5}  COMMAND")
    from taskscope.report import safe_text

    # A terminal gets one line per process; a pipe or file gets whole command
    # lines, since scripts grep them and the checkout path may be long.
    command_width = max(20, os.get_terminal_size().columns - 25) if sys.stdout.isatty() else 4096
    commands = {int(row[0]): row[3] for row in rows}
    parents = {pid: parent_pid(pid) for pid in commands}
    for depth, (pid_text, version, agent, command) in _as_process_tree(rows, parents):
        command = _named_command(command, commands.get(parents[int(pid_text)] or 0))
        shown = ("  " * (depth - 1) + "└ " if depth else "") + command
        print(f"{pid_text:>7}  {version:7}  {agent:5}  {safe_text(shown, command_width)}")
    return 0


#: How `list` names multiprocessing's processes, whose command lines are a `-c` script (and
#: on 3.14+, the fork server's, with the whole of `sys.path`, kept by every worker it forks).
_ROLE_NAMES = {
    "resource_tracker": "multiprocessing's resource tracker",
    "fork_server": "multiprocessing's fork server",
    "forked_worker": "multiprocessing worker (forked by the fork server)",
    "spawned_worker": "multiprocessing worker (spawned)",
}


def _named_command(command: str, parent_command: str | None) -> str:
    """A process's command as `list` shows it: multiprocessing's helpers and workers named
    for what they are (`python: multiprocessing's fork server`), any other as it is."""
    from taskscope.process_facts import multiprocessing_role

    role = multiprocessing_role(command, parent_command)
    if role is None:
        return command
    interpreter = command.split(" ", 1)[0]
    return f"{interpreter}: {_ROLE_NAMES[role]}"


def _as_process_tree(
    rows: list[tuple[str, str, str, str]], parents: Mapping[int, int | None]
) -> list[tuple[int, tuple[str, str, str, str]]]:
    """The rows in their order, each listed process's Python children right under it
    (indented by depth: worker processes under their uvicorn, gunicorn or multiprocessing
    parent), from each row's parent pid in `parents`."""
    by_pid = {int(row[0]): row for row in rows}
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for row in rows:
        pid = int(row[0])
        parent = parents.get(pid)
        if parent in by_pid and parent != pid:
            children.setdefault(parent, []).append(pid)
        else:
            roots.append(pid)
    ordered: list[tuple[int, tuple[str, str, str, str]]] = []
    seen: set[int] = set()

    def visit(pid: int, depth: int) -> None:
        if pid in seen:
            return
        seen.add(pid)
        ordered.append((depth, by_pid[pid]))
        for child in sorted(children.get(pid, [])):
            visit(child, depth + 1)

    for pid in roots:
        visit(pid, 0)
    for pid in by_pid:  # a loop of parents (cannot happen, but never drop a process)
        visit(pid, 0)
    return ordered


def _command_line(pid: int) -> str:
    from taskscope.process_facts import command_line

    argv = command_line(pid)
    return "?" if argv is None else " ".join(argv).strip()


def cmd_ps(args: argparse.Namespace) -> int:
    from taskscope.lints import find_warnings, warned_tasks
    from taskscope.model import TaskModel
    from taskscope.report import (
        blocked_lines,
        gil_wait_lines,
        header,
        no_tasks_note,
        ps_table,
        read_only_lines,
        warning_lines,
    )
    from taskscope.words import untimed_sort_words

    snapshot, argv = take_snapshot(args)
    model = TaskModel.from_snapshot(snapshot)
    findings = find_warnings(model)
    warned = warned_tasks(findings)
    print(header(model, argv))
    for line in read_only_lines(snapshot):
        print(line)
    for line in blocked_lines(model):
        print(line)
    for line in gil_wait_lines(model):
        print(line)
    if getattr(args, "warnings", False) and not findings:
        print("no warnings")
        return 0
    if args.sort in ("busy", "steps") and all(task.steps is None for task in model.tasks.values()):
        print(f"taskscope: {untimed_sort_words(args.sort)}", file=sys.stderr)
    table = ps_table(
        model,
        include_finished=args.all,
        now=shown_now(args, snapshot),
        sort=args.sort,
        warned=warned,
        only=set(warned) if getattr(args, "warnings", False) else None,
    )
    print(table)
    if not getattr(args, "warnings", False):
        note = no_tasks_note(model, include_finished=args.all)
        if note is not None:
            print(note)
    for line in warning_lines(findings, model):
        print(line)
    return 0


def cmd_tree(args: argparse.Namespace) -> int:
    from taskscope.lints import find_warnings, warned_tasks
    from taskscope.model import TaskModel
    from taskscope.report import read_only_lines, tree_text, warning_lines

    snapshot, argv = take_snapshot(args)
    model = TaskModel.from_snapshot(snapshot)
    findings = find_warnings(model)
    width = os.get_terminal_size().columns if sys.stdout.isatty() else 120
    text = tree_text(
        model,
        argv,
        include_finished=args.all,
        now=shown_now(args, snapshot),
        width=width,
        notes=read_only_lines(snapshot),
        warned=warned_tasks(findings),
    )
    print(text)
    for line in warning_lines(findings, model):
        print(line)
    return 0


def snapshot_warnings(snapshot: WireSnapshot) -> list[WireWarning]:
    """The snapshot's warnings as `dump` gives them: `[{kind, tasks, text}]`."""
    from taskscope.lints import find_warnings, warning_records
    from taskscope.model import TaskModel

    model = TaskModel.from_snapshot(warning_records(snapshot))
    return [
        {"kind": finding.kind, "tasks": list(finding.tasks), "text": finding_text(finding, model)}
        for finding in find_warnings(model)
    ]


def cmd_dump(args: argparse.Namespace) -> int:
    if args.indent is None:
        taken = take_rows(args)
        if isinstance(taken, CompactSnapshot):
            write_rows_dump(taken, sys.stdout)
            return 0
        snapshot = taken
    else:
        snapshot, _argv = take_snapshot(args)
    if "read_only" in snapshot or args.from_file:
        # The client gave the agent's snapshots their words; a recording's are made again
        # for the moment shown (a task left an await cycle since its record was written)
        fill_texts(snapshot, "tasks")
    snapshot["warnings"] = snapshot_warnings(snapshot)
    # One string, not json.dump: dump streams through json's pure-Python encoder, which
    # takes seconds for 100,000 tasks where the C encoder of dumps takes a fraction of one.
    # Control, bidi and zero-width characters of task names escaped: the same JSON, inert
    # in a terminal.
    text = json.dumps(snapshot, indent=args.indent, ensure_ascii=False)
    sys.stdout.write(terminal_safe_json(text) + "\n")
    return 0


#: Stands for the tasks while the rest of a snapshot is encoded (see `write_rows_dump`).
_TASKS_MARK = "\x00taskscope tasks\x00"


def write_rows_dump(rows: CompactSnapshot, out: TextIO) -> None:
    """`dump`'s JSON of a snapshot left in compact rows, written to `out` as it is made: the
    same text as `json.dumps` of its records with their words and its warnings (then
    `terminal_safe_json`), from the rows straight (`CompactSnapshot.json_rows`), records
    made only for the few rows a warning can be about."""
    body = dict(rows.body)
    body["warnings"] = row_warnings(rows)
    body["tasks"] = _TASKS_MARK
    text = json.dumps(body, ensure_ascii=False)
    marker = json.dumps(_TASKS_MARK)
    try:
        if text.count(marker) != 1:  # the mark is in the snapshot's own strings
            body["tasks"] = rows.records(rows.rows)
            fill_texts(body, "tasks")
            out.write(terminal_safe_json(json.dumps(body, ensure_ascii=False)) + "\n")
            return
        head, tail = text.split(marker)
        out.write(terminal_safe_json(head))
        for piece in rows.json_rows(_schema_words(rows)):
            out.write(piece)
    except ValueError as error:
        raise ClientError(f"bad reply from the agent: {error}") from None
    out.write(terminal_safe_json(tail) + "\n")


def _schema_words(rows: CompactSnapshot) -> Callable[[Mapping[str, Any], bool], str]:
    """`schema_text` for the descriptions of `rows`, the objects two of them name alike
    lettered (`object_letters`: as `ps` and `lint` letter them)."""
    letters = object_letters(
        named for named in (named_object(awaiting) for awaiting in rows.awaits) if named
    )

    def words(awaiting: Mapping[str, Any], in_cycle: bool) -> str:
        return schema_text(awaiting, in_cycle=in_cycle, letter=letter_of(awaiting, letters))

    return words


def row_warnings(rows: CompactSnapshot) -> list[WireWarning]:
    """`snapshot_warnings` of a snapshot left in rows, from the records of the rows a warning
    can be about (`warning_records` keeps fewer still): those with keys beyond the row's,
    with an `awaiting` that warns, in an await cycle or a stall, or that some task's wait
    points at (`lints.waits_on`)."""
    from taskscope.lints import awaiting_warns, waits_on

    body = rows.body
    named = {task_id for cycle in body.get("cycles") or () for task_id in cycle}
    named.update(
        stall.get("task") for loop in body.get("loops") or () for stall in loop.get("stalls") or ()
    )
    warns: set[int] = set()
    seen: dict[int, bool] = {}  # id(awaiting) -> whether it warns (descriptions are shared)
    for index, awaiting in enumerate(rows.awaits):
        warning = seen.get(id(awaiting))
        if warning is None:
            warning = seen[id(awaiting)] = awaiting_warns(awaiting)
            named.update(waits_on(awaiting))
        if warning:
            warns.add(index)
    chosen = rows.rows_about(warns, named)
    try:
        subset = dict(body)
        subset["tasks"] = rows.records(chosen)
    except ValueError as error:
        raise ClientError(f"bad reply from the agent: {error}") from None
    fill_texts(subset, "tasks")
    return snapshot_warnings(subset)  # type: ignore[arg-type]


def cmd_lint(args: argparse.Namespace) -> int:
    """One line per warning (`KIND TASKS: text`); exit status EXIT_WARNINGS when there is
    any, 0 when none: for CI and scripts."""
    from taskscope.lints import find_warnings
    from taskscope.model import TaskModel
    from taskscope.report import safe_text

    snapshot, _argv = take_snapshot(args)
    model = TaskModel.from_snapshot(snapshot)
    findings = find_warnings(model)
    for finding in findings:
        print(safe_text(finding_text(finding, model)))
    if not findings:
        print(f"no warnings in process {model.pid}", file=sys.stderr)
        return 0
    return EXIT_WARNINGS
