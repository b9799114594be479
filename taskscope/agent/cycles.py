"""Await cycles: the groups of tasks that await one another, from the edges of a snapshot's
await graph (waiter -> the tasks it awaits)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from taskscope.protocol import pieces

_Node = TypeVar("_Node", bound=Hashable)


def find_cycles(edges: dict[int, list[int]]) -> list[list[int]]:
    """Strongly connected components of more than one task, each sorted, in sorted order.

    A task on a cycle both awaits and is awaited: only those are walked (a server's await
    graph is mostly owners awaiting tasks that await none, and has none of them)."""
    awaited: set[int] = set()
    for piece in pieces(edges.values()):  # a waiter per task, at most: sliced
        for targets in piece:
            awaited.update(targets)
    both = awaited.intersection(edges)
    if len(both) < 2:
        return []
    inner = {node: [child for child in edges[node] if child in both] for node in both}
    return sorted(sorted(group) for group in strongly_connected(inner) if len(group) > 1)


def strongly_connected(edges: Mapping[_Node, Sequence[_Node]]) -> list[list[_Node]]:
    """Every strongly connected component of the graph (Tarjan, iterative: deep graphs do not
    recurse), a lone node included; the client's lints use it too (taskscope/lints.py)."""
    index_of: dict[_Node, int] = {}
    low: dict[_Node, int] = {}
    on_stack: set[_Node] = set()
    stack: list[_Node] = []
    components: list[list[_Node]] = []
    counter = 0
    for root in edges:
        if root in index_of:
            continue
        work: list[tuple[_Node, int]] = [(root, 0)]
        while work:
            node, child_index = work.pop()
            if child_index == 0:
                index_of[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = edges.get(node, ())
            recurse = False
            for position in range(child_index, len(children)):
                child = children[position]
                if child not in index_of:
                    work.append((node, position + 1))
                    work.append((child, 0))
                    recurse = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index_of[child])
            if recurse:
                continue
            if low[node] == index_of[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components
