"""Rows the database itself deletes or changes: ``ON DELETE CASCADE / SET NULL / SET DEFAULT``.

A DELETE (the flush's own, a bulk ORM one, Core) of a table whose rows are referenced
with an ``ondelete`` action removes or changes rows the statement does not name. Before it
runs, :meth:`CascadeGraph.tags` reads those rows, level by level (a folder's subfolders'
files...), and tags them by their rules (association rows: both rows each one links,
``links.py``).

The graph (:class:`Edge` per foreign key with an ``ondelete`` action that reaches a tracked
table, directly or through further cascades) is built once from the tables' metadata, and
again after a ``track()`` or when a metadata gains a table; for most tables it is empty,
which is the hot path.

Bounds: above :data:`~.rows.BULK_ROW_CAP` rows of a table at one level, ``type:{entity}``
stands for their entity tags (their parent tags stay exact) and the next level is selected
through a subquery instead of by id; past :data:`CASCADE_MAX_NESTING` such subqueries, or
:data:`CASCADE_MAX_DEPTH` levels, the type tags of every table still reachable stand for
the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import TextClause

from ..rules import parent_tag
from ..tags import type_tag
from . import links, rows
from .rows import ConnectionOf, Run, TableInfo, TrackedTables, coarse_tags, distinct_parent_tags
from .sqlexpr import in_chunks

__all__ = ["CASCADE_MAX_DEPTH", "CASCADE_MAX_NESTING", "CascadeGraph", "Edge"]

log = logging.getLogger("flask_dataroom_cache")

#: ``ondelete`` actions of a foreign key that change rows the statement does not name.
_ON_DELETE = {"CASCADE": "delete", "SET NULL": "null", "SET DEFAULT": "default"}
#: A database cascade deeper than this many levels stops descending: ``type:{entity}``
#: (and ``{entity}:list``) of every table still reachable stands for the rest.
CASCADE_MAX_DEPTH = 256
#: Levels selected through nested subqueries (below a level above ``BULK_ROW_CAP``) stop
#: the same way after this many, before the SQL nests too deep for the database.
CASCADE_MAX_NESTING = 8

#: One level still to walk: (table, condition on its deleted rows, their primary keys when
#: known, how many subqueries the condition nests).
_Frontier = tuple[sa.Table, Any, list[Any] | None, int]


@dataclass(frozen=True)
class Edge:
    """A foreign key of ``child`` referencing ``parent`` with an ``ondelete`` action."""

    parent: sa.Table
    child: sa.Table
    fk_cols: tuple[sa.Column[Any], ...]  # in child
    ref_cols: tuple[sa.Column[Any], ...]  # in parent
    action: str  # "delete" (CASCADE), "null" (SET NULL), "default" (SET DEFAULT)


class CascadeGraph:
    """The ``ondelete`` foreign keys reaching the tracked tables of one tracker."""

    def __init__(self, tables: TrackedTables) -> None:
        self.tables = tables
        self._cascades: dict[sa.Table, tuple[Edge, ...]] = {}
        self._metas: list[sa.MetaData] = []
        #: (tracked tables version, tables in the metadata) the graph was built for
        self._signature: tuple[int, int] | None = None

    def edges(self, table: Any) -> tuple[Edge, ...]:
        """The ``ondelete`` foreign keys referencing ``table`` that reach tracked rows
        (directly, or through further cascades). Empty for most tables: the hot path."""
        self.tables.refresh()
        sig = self._signature
        if (
            sig is None
            or sig[0] != self.tables.version
            or sig[1] != sum(len(md.tables) for md in self._metas)
        ):
            self._build()
        return self._cascades.get(table, ())

    def _build(self) -> None:
        tracked = {t for t, _ in self.tables.items()}
        tracked |= set(self.tables.associations())  # their rows link tracked rows
        metas = list({id(t.metadata): t.metadata for t in tracked}.values())
        edges: dict[sa.Table, list[Edge]] = {}
        for md in metas:
            for child in md.tables.values():
                for fkc in child.foreign_key_constraints:
                    action = _ON_DELETE.get((fkc.ondelete or "").strip().upper())
                    if action is None or not fkc.elements:
                        continue
                    try:
                        refs = tuple(fk.column for fk in fkc.elements)
                    except sa.exc.SQLAlchemyError:  # unresolvable reference: no edge
                        continue
                    parent = refs[0].table
                    if not isinstance(parent, sa.Table):
                        continue
                    fks = tuple(fk.parent for fk in fkc.elements)
                    edges.setdefault(parent, []).append(Edge(parent, child, fks, refs, action))
        # a table matters if it is tracked or its deletion cascades to one that matters
        relevant = set(tracked)
        changed = True
        while changed:
            changed = False
            for parent, found in edges.items():
                if parent not in relevant and any(
                    e.action == "delete" and e.child in relevant for e in found
                ):
                    relevant.add(parent)
                    changed = True
        cascades: dict[sa.Table, tuple[Edge, ...]] = {}
        for parent, found in edges.items():
            kept = tuple(
                e
                for e in found
                if e.child in tracked or (e.action == "delete" and e.child in relevant)
            )
            if kept:
                cascades[parent] = kept
        self._cascades = cascades
        self._metas = metas
        self._signature = (self.tables.version, sum(len(md.tables) for md in metas))

    def tags(
        self, table: sa.Table, cond: Any, run: Run, connection: ConnectionOf, tags: set[str]
    ) -> None:
        """Add the tags of every row the database itself deletes (``ON DELETE CASCADE``)
        or changes (``SET NULL`` / ``SET DEFAULT``) because the rows of ``table`` matching
        ``cond`` are deleted. Runs *before* the DELETE: one SELECT per foreign key and
        level, descending through nested rows."""
        frontier: list[_Frontier] = [(table, cond, None, 0)]
        visited: dict[sa.Table, set[Any]] = {}
        depth = 0
        while frontier:
            depth += 1
            if depth > CASCADE_MAX_DEPTH:
                log.warning("database cascade deeper than %d levels: type tags", depth - 1)
                self.reachable_type_tags([f[0] for f in frontier], tags)
                return
            nxt: list[_Frontier] = []
            for parent, pcond, pkeys, nesting in frontier:
                if nesting > CASCADE_MAX_NESTING:
                    self.reachable_type_tags([parent], tags, include_self=False)
                    continue
                for edge in self._cascades.get(parent, ()):
                    found = self._level(edge, pcond, pkeys, run, connection, tags, visited)
                    if found is not None and edge.action == "delete":
                        ccond, ckeys = found
                        nxt.append((edge.child, ccond, ckeys, 0 if ckeys else nesting + 1))
            frontier = nxt

    def reachable_type_tags(
        self, tables: list[sa.Table], tags: set[str], include_self: bool = True
    ) -> None:
        """The type (and list) tags of ``tables`` and of every table their deletion
        cascades to: what stands for rows no longer read one by one."""
        todo = (
            list(tables)
            if include_self
            else [e.child for t in tables for e in self._cascades.get(t, ())]
        )
        seen: set[sa.Table] = set()
        while todo:
            tbl = todo.pop()
            if tbl in seen:
                continue
            seen.add(tbl)
            info = self.tables.known(tbl)
            if info is not None:
                coarse_tags(info.rule, tags)
            todo.extend(e.child for e in self._cascades.get(tbl, ()))

    def _level(
        self,
        edge: Edge,
        pcond: Any,
        pkeys: list[Any] | None,
        run: Run,
        connection: ConnectionOf,
        tags: set[str],
        visited: dict[sa.Table, set[Any]],
    ) -> tuple[Any, list[Any] | None] | None:
        """Tag the rows of ``edge.child`` referencing the deleted parent rows; return the
        condition (and primary keys) of those rows for the next level, None if none."""
        cap = rows.BULK_ROW_CAP
        child = edge.child
        info = self.tables.known(child)
        assoc = self.tables.known_association(child) if info is None else None
        parent_pk = tuple(edge.parent.primary_key.columns)
        fk = edge.fk_cols[0] if len(edge.fk_cols) == 1 else sa.tuple_(*edge.fk_cols)
        conds: list[Any]
        if pkeys is not None and edge.ref_cols == parent_pk:
            conds = in_chunks(fk, [k[0] for k in pkeys] if len(parent_pk) == 1 else pkeys)
        else:
            conds = [fk.in_(sa.select(*edge.ref_cols).where(pcond))]
        pk = tuple(child.primary_key.columns)
        cols: list[Any] = list(pk)
        if info is not None:
            cols.extend(c for c in (info.id_col, *info.parent_cols.values()) if c is not None)
        if assoc is not None:
            cols.extend(assoc.columns)
        cols = list(dict.fromkeys(cols))
        if not cols:
            cols = list(edge.fk_cols)
        found: list[Any] = []
        for c in conds:
            found.extend(run(sa.select(*cols).where(c).limit(cap + 1)).all())
            if len(found) > cap:
                break
        if not found:
            return None
        whole = conds[0] if len(conds) == 1 else sa.or_(*conds)
        kind = "delete" if edge.action == "delete" else "update"
        if assoc is not None:  # the rows (before the statement) link both sides: tag them
            reader = links.Reader.on(run, connection)
            links.condition_tags(assoc, whole, reader, tags, found if len(found) <= cap else None)
        if len(found) > cap or not pk:
            if info is not None:
                coarse_tags(info.rule, tags)
                distinct_parent_tags(info, whole, run, tags)
                if edge.action == "default":
                    _default_tags(info, edge, tags)
            return whole, None
        seen = visited.setdefault(child, set())
        keys: list[Any] = []
        new_rows = []
        for row in found:
            key = tuple(row[i] for i in range(len(pk)))
            if key in seen:
                continue  # already tagged (a cycle, or reached through two foreign keys)
            seen.add(key)
            keys.append(key)
            new_rows.append(row)
        if not keys:
            return None
        if info is not None:
            rule = info.rule
            ids = []
            for row in new_rows:
                m = row._mapping
                current = {a: m[c] for a, c in info.parent_cols.items()}
                if info.id_col is not None:
                    current[rule.id_attr] = m[info.id_col]
                    ids.append(m[info.id_col])
                rule.collect(tags, None, kind, current)
            if rule.needs_obj and ids:
                rows.object_tags(info, ids, kind, connection, tags)
            if edge.action == "default":
                _default_tags(info, edge, tags)
        if len(pk) == 1:
            return pk[0].in_([k[0] for k in keys]), keys
        return sa.tuple_(*pk).in_(keys), keys


def _default_tags(info: TableInfo, edge: Edge, tags: set[str]) -> None:
    """``ON DELETE SET DEFAULT``: the parent the rows now point to, if the default is a
    literal; else ``type:{entity}``."""
    rule = info.rule
    for fk_col in edge.fk_cols:
        attr = next((a for a, c in info.parent_cols.items() if c is fk_col), None)
        if attr is None:
            continue
        default = fk_col.server_default
        value = getattr(default, "arg", None)
        if isinstance(value, TextClause):
            value = value.text
        if isinstance(value, str):
            value = value.strip().strip("'\"")
        if default is None:
            continue  # NULL: no new parent
        if isinstance(value, str | int) and value != "":
            tags.add(parent_tag(rule.parents[attr], value))
        else:
            tags.add(type_tag(rule.entity))
