"""Tracked tables, and the tags of their rows when the rows are known only as values.

The flush hands the tracker objects; bulk statements, Core DML, database cascades and
textual SQL hand it tables and rows. :class:`TrackedTables` maps each table of a tracked
model to its rule and the columns that carry the entity id and the parents
(:class:`TableInfo`), rebuilt whenever a ``cache.track`` changes the registry, and knows
the association tables linking them (``associations.py``). The functions below turn rows
of a tracked table into tags:

* :func:`row_tags`: one row given as values (the id and the parent columns);
* :func:`object_tags`: rows loaded as objects, for rules that need them (``members``,
  ``cache_tags``);
* :func:`coarse_tags`: ``type:{entity}`` (and ``{entity}:list``) standing for rows that
  cannot be known, or are too many to tag one by one (more than :data:`BULK_ROW_CAP`);
* :func:`distinct_parent_tags`: the parents of such rows, read with ``SELECT DISTINCT``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..rules import Registry, Rule, parent_tag
from ..tags import entity_tag, list_tag, type_tag
from .sqlexpr import in_chunks, mapper_compiled_cache

if TYPE_CHECKING:
    from .associations import Association

__all__ = [
    "BULK_ROW_CAP",
    "TableInfo",
    "TrackedTables",
    "coarse_tags",
    "distinct_parent_tags",
    "object_tags",
    "row_tags",
]

#: A bulk UPDATE/DELETE (or a database cascade level) matching more rows than this bumps
#: ``type:{entity}`` instead of one ``{entity}:{id}`` per row (parent tags stay exact: read
#: with SELECT DISTINCT). Read at call time (``rows.BULK_ROW_CAP``): tests lower it.
BULK_ROW_CAP = 1000

#: ``run(statement)`` executes a SELECT where the statement being tracked runs (its
#: session and bind, or its connection) and returns the result.
Run = Callable[[Any], Any]
#: ``connection()`` gives the connection the statement runs on (None if unknown).
ConnectionOf = Callable[[], Connection | None]


@dataclass
class TableInfo:
    """One table of a tracked model: its rule and the columns that carry tags."""

    rule: Rule
    table: sa.Table
    #: The column of ``rule.id_attr`` in this table (None: the id lives in another table).
    id_col: sa.Column[Any] | None
    #: ``{parent attribute: column}`` for the parents stored in this table.
    parent_cols: dict[str, sa.Column[Any]]
    #: The mapper's compiled cache: the unit of work's own statements carry it.
    mapper_cache: Any = None

    @classmethod
    def build(cls, rule: Rule, mapper: Any, table: sa.Table) -> TableInfo:
        def col(attr: str) -> sa.Column[Any] | None:
            prop = mapper.attrs.get(attr)
            columns = getattr(prop, "columns", None)
            if columns and columns[0].table is table:
                return columns[0]  # type: ignore[no-any-return]
            return None

        parents = {a: c for a in rule.parents if (c := col(a)) is not None}
        return cls(rule, table, col(rule.id_attr), parents, mapper_compiled_cache(mapper))


class TrackedTables:
    """``table -> TableInfo`` for every table of every tracked model of one registry."""

    def __init__(self, registry: Registry) -> None:
        from .associations import AssociationIndex

        self.registry = registry
        self._tables: dict[sa.Table, TableInfo | None] = {}
        #: The registry version the map was built for (-1: not built yet).
        self.version = -1
        self._associations = AssociationIndex(registry)

    def refresh(self) -> None:
        """Rebuild the map if the registry changed (a ``track()``) since the last build."""
        if self.version != self.registry.version:
            self._tables.clear()
            self.version = self.registry.version
            for rule in self.registry.rules():
                try:
                    mapper: Any = sa.inspect(rule.model)
                except sa.exc.NoInspectionAvailable:
                    continue
                for tbl in mapper.tables:
                    self._tables.setdefault(tbl, TableInfo.build(rule, mapper, tbl))

    def get(self, table: Any) -> TableInfo | None:
        """The info of a tracked table; None for any other table."""
        if self.version != self.registry.version:  # hot: every DML statement
            self.refresh()
        return self._tables.get(table)

    def known(self, table: Any) -> TableInfo | None:
        """Like :meth:`get`, without the refresh (the caller refreshed)."""
        return self._tables.get(table)

    def items(self) -> list[tuple[sa.Table, TableInfo]]:
        """Every tracked table with its info (the caller refreshed)."""
        return [(t, i) for t, i in self._tables.items() if i is not None]

    def association(self, table: Any) -> Association | None:
        """The association table ``table`` is (declared, or detected), None for any other."""
        self.refresh()
        return self._associations.get(table, self._tables)

    def known_association(self, table: Any) -> Association | None:
        """Like :meth:`association`, without the refresh (the caller refreshed)."""
        return self._associations.get(table, self._tables)

    def associations(self) -> dict[sa.Table, Association]:
        """Every association table linking tracked tables (the caller refreshed)."""
        return self._associations.all(self._tables)


def coarse_tags(rule: Rule, tags: set[str]) -> None:
    """``type:{entity}`` and ``{entity}:list``: rows of the entity that are not named."""
    tags.add(type_tag(rule.entity))
    if rule.list_tag:
        tags.add(list_tag(rule.entity))


def row_tags(info: TableInfo, row: Mapping[Any, Any], tags: set[str]) -> None:
    """The entity and parent tags of one row, given as ``{column, column key or attribute:
    value}`` (a result row's mapping, statement parameters, literal VALUES)."""
    rule = info.rule

    def get(attr: str, column: sa.Column[Any] | None) -> Any:
        for k in (column, getattr(column, "key", None), attr):
            if k is not None and k in row:
                return row[k]
        return None

    ident = get(rule.id_attr, info.id_col)
    if ident is not None:
        tags.add(entity_tag(rule.entity, ident))
    for attr, column in info.parent_cols.items():
        value = get(attr, column)
        if value is not None:
            tags.add(parent_tag(rule.parents[attr], value))


def distinct_parent_tags(info: TableInfo, where: Any, run: Run, tags: set[str]) -> None:
    """The parent tags of every row of ``info.table`` matching ``where`` (None: all), one
    ``SELECT DISTINCT`` per parent column: too many rows to read by id."""
    rule = info.rule
    for attr, column in info.parent_cols.items():
        query = sa.select(column).distinct()
        if where is not None:
            query = query.where(where)
        ptype = rule.parents[attr]
        tags.update(parent_tag(ptype, v) for (v,) in run(query) if v is not None)


def object_tags(
    info: TableInfo, ids: list[Any], kind: str, connection: ConnectionOf, tags: set[str]
) -> None:
    """``members`` and ``cache_tags`` of rows a bulk statement matched or a database
    cascade deletes: they need the objects, loaded (before the statement) in a throwaway
    session on the same connection (inside the same transaction)."""
    conn = connection()
    if conn is None or info.id_col is None:
        tags.add(type_tag(info.rule.entity))
        return
    rule = info.rule
    tmp = Session(bind=conn, autoflush=False, expire_on_commit=False)
    try:
        for condition in in_chunks(info.id_col, ids):
            query: Any = sa.select(rule.model).where(condition)
            for obj in tmp.scalars(query):
                rule.collect(tags, obj, kind, obj.__dict__)
    finally:
        tmp.expunge_all()
        tmp.close()
