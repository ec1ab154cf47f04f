"""Rows the database deletes or changes itself (``ON DELETE CASCADE / SET NULL / SET
DEFAULT``) -> automatic tags, for every table of the written table's metadata.

Before a DELETE runs (the flush's own, a bulk ORM one, Core), :func:`cascade_tags` reads,
level by level, the rows of every table whose foreign key references the deleted rows with
an ``ondelete`` action, on the statement's own connection, and tags them
(``autorows.py``): a deleted child its old key and values; a child set to NULL its key,
its values and ``~c:{child}:{fk}=~null``; a child set to its server default ``~e:{child}``
(the default is known only to the database). Above the row bound at one level, that
table's ``~e`` stands for its rows and the next level is read through a subquery; past
:data:`MAX_DEPTH` levels, ``~e`` of every table still reachable. A cascade that exists only
in the database schema (not in the metadata) is not seen (``docs/auto-tags.md``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..autotags import column_tag
from .autorows import AutoWrites

__all__ = ["MAX_DEPTH", "cascade_tags", "has_cascades", "reachable_epochs"]

#: Levels followed one by one; deeper, ``~e`` of every table still reachable.
MAX_DEPTH = 16
_ACTIONS = {"CASCADE": "delete", "SET NULL": "null", "SET DEFAULT": "default"}


@dataclass(frozen=True)
class _Edge:
    child: sa.Table
    fk_cols: tuple[sa.Column[Any], ...]
    ref_cols: tuple[sa.Column[Any], ...]
    action: str


_graphs: weakref.WeakKeyDictionary[sa.MetaData, tuple[int, dict[sa.Table, list[_Edge]]]] = (
    weakref.WeakKeyDictionary()
)


def _edges(table: sa.Table) -> list[_Edge]:
    """The ``ondelete`` foreign keys referencing ``table`` in its metadata (a pure memo
    per metadata, rebuilt when it gains a table: the same answer for every app)."""
    md = table.metadata
    memo = _graphs.get(md)
    if memo is None or memo[0] != len(md.tables):
        graph: dict[sa.Table, list[_Edge]] = {}
        for child in md.tables.values():
            for fkc in child.foreign_key_constraints:
                action = _ACTIONS.get((fkc.ondelete or "").strip().upper())
                if action is None or not fkc.elements:
                    continue
                try:
                    refs = tuple(fk.column for fk in fkc.elements)
                except sa.exc.SQLAlchemyError:
                    continue
                parent = refs[0].table
                if isinstance(parent, sa.Table):
                    fks = tuple(fk.parent for fk in fkc.elements)
                    graph.setdefault(parent, []).append(_Edge(child, fks, refs, action))
        memo = (len(md.tables), graph)
        _graphs[md] = memo
    return memo[1].get(table, [])


def has_cascades(table: Any) -> bool:
    """True if deleting rows of ``table`` makes the database change other rows."""
    return isinstance(table, sa.Table) and bool(_edges(table))


def cascade_tags(auto: AutoWrites, table: sa.Table, cond: Any, run: Any, tags: set[str]) -> None:
    """Tag every row the database deletes or changes because the rows of ``table``
    matching ``cond`` are deleted (read now, before the DELETE)."""
    frontier: list[tuple[sa.Table, Any]] = [(table, cond)]
    seen: dict[sa.Table, set[Any]] = {}
    for _depth in range(MAX_DEPTH):
        nxt: list[tuple[sa.Table, Any]] = []
        for parent, pcond in frontier:
            for edge in _edges(parent):
                found = _level(auto, edge, pcond, run, tags, seen)
                if found is not None and edge.action == "delete":
                    nxt.append((edge.child, found))
        frontier = nxt
        if not frontier:
            return
    reachable_epochs(auto, [t for t, _ in frontier], tags, include_self=True)


def _level(
    auto: AutoWrites,
    edge: _Edge,
    pcond: Any,
    run: Any,
    tags: set[str],
    seen: dict[sa.Table, set[Any]],
) -> Any:
    """Tag the child rows of one foreign key; the condition on them for the next level
    (None: no new row)."""
    child = edge.child
    plan = auto.plan(child)
    fk: Any = edge.fk_cols[0] if len(edge.fk_cols) == 1 else sa.tuple_(*edge.fk_cols)
    ref = sa.select(*edge.ref_cols)
    if pcond is not None:
        ref = ref.where(pcond)
    ccond = fk.in_(ref)
    keys = auto.select(plan, ccond, run, tags)
    if edge.action == "default":
        auto.epoch(child, tags)
    if keys is None:  # too many (``~e`` bumped) or no primary key
        auto.epoch(child, tags)
        return ccond if edge.action == "delete" else None
    if not keys:
        return None
    if edge.action == "null":
        for col in edge.fk_cols:
            if col in plan.values:
                tags.add(column_tag(plan.name, col.name, None))
    done = seen.setdefault(child, set())
    fresh = [k for k in keys if k not in done]
    done.update(fresh)
    if not fresh:
        return None
    if len(plan.pk) == 1:
        return plan.pk[0].in_([k[0] for k in fresh])
    return sa.tuple_(*plan.pk).in_(fresh)


def reachable_epochs(
    auto: AutoWrites, tables: list[sa.Table], tags: set[str], include_self: bool = False
) -> None:
    """``~e`` of every table a deletion of rows of ``tables`` may change (cascades): the
    rows are unknown."""
    todo = list(tables) if include_self else [e.child for t in tables for e in _edges(t)]
    done: set[sa.Table] = set()
    while todo:
        table = todo.pop()
        if table in done:
            continue
        done.add(table)
        auto.epoch(table, tags)
        todo.extend(e.child for e in _edges(table))
