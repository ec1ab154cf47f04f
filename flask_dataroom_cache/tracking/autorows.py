"""Automatic tags of written rows (issue 17, ``docs/auto-tags.md``): rows as values -> tags.

Every write on a tracked engine, to any table, mapped or not, bumps (names from
``autotags.py``):

* ``~t:{table}`` for the table;
* ``~r:{table}:{pk}`` for the row's old key and its new key;
* ``~c:{table}:{column}={value}`` for the row's *old and new* value of each value column
  (``ValueColumns.of(table)``: foreign keys + declared), whatever columns the write set;
* ``~e:{table}`` when the rows cannot be known (then ``~r`` / ``~c`` are not needed: every
  reader of the table carries ``~e``), and the namespace epoch when even the tables cannot.

:class:`AutoWrites` is one tracker's switch and bound (``CACHE_AUTO_TAGS``,
``CACHE_AUTO_TAGS_MAX_ROWS``); None on the tracker when automatic tags are off, so nothing
here runs. The callers find the rows: ``autoflush.py`` (flushed objects, from attribute
history), ``autostatements.py`` (Core and ORM statements, read on the statement's own
connection), ``autocascades.py`` (rows the database deletes or changes itself), the
textual path (``core.py``). This module turns rows into tags and keeps a commit's tags
bounded (:meth:`AutoWrites.bounded`, called by ``delivery.py``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..autotags import ValueColumns, column_tag, epoch_tag, row_tag, table_tag

__all__ = ["UNKNOWN", "AutoWrites", "TablePlan"]

#: A value the tracker cannot know (a server default, an SQL expression).
UNKNOWN: Any = object()

_ROW = "~r:"
_COLUMN = "~c:"


@dataclass(frozen=True)
class TablePlan:
    """What automatic tags read of one table's rows: its key and its value columns."""

    table: sa.Table
    name: str
    pk: tuple[sa.Column[Any], ...]
    values: tuple[sa.Column[Any], ...]

    @property
    def columns(self) -> list[sa.Column[Any]]:
        """The columns to SELECT to tag a row (key first, no duplicates)."""
        return list(dict.fromkeys((*self.pk, *self.values)))


class AutoWrites:
    """One tracker's automatic write tags: the value columns, the bound, the plans."""

    def __init__(self, value_columns: ValueColumns, max_rows: int) -> None:
        self.value_columns = value_columns
        #: Rows (and column values) of one table per statement / commit above which
        #: ``~e:{table}`` stands for them.
        self.max_rows = max_rows
        self._plans: weakref.WeakKeyDictionary[sa.Table, tuple[int, TablePlan]] = (
            weakref.WeakKeyDictionary()
        )
        #: ``.orm``: this thread runs an ORM UPDATE/DELETE that ``do_orm_execute`` tags
        #: (its Core statements are not tagged again, ``autostatements.py``).
        self.local = threading.local()

    # -- plans ----------------------------------------------------------------------------------
    def plan(self, table: sa.Table) -> TablePlan:
        """The plan of ``table`` (memoised; value columns may be declared later: the
        memo of :class:`ValueColumns` is rebuilt on a declaration, and so is this one)."""
        version = self.value_columns.version
        memo = self._plans.get(table)
        if memo is not None and memo[0] == version:
            return memo[1]
        names = self.value_columns.of(table)
        values = tuple(c for c in table.columns if c.name in names)
        found = TablePlan(table, table.fullname, tuple(table.primary_key.columns), values)
        self._plans[table] = (version, found)
        return found

    # -- tags -------------------------------------------------------------------------------------
    @staticmethod
    def row(plan: TablePlan, values: Mapping[Any, Any], tags: set[str]) -> bool:
        """Tag one row given as ``{column: value}`` (``Column`` objects as keys):
        ``~t``, ``~r`` of its key, ``~c`` of each value column. False (nothing but ``~t``
        added) if its key or a value column is missing or :data:`UNKNOWN`: the caller
        bumps ``~e`` for the table."""
        tags.add(table_tag(plan.name))
        key = []
        for col in plan.pk:
            value = values.get(col, UNKNOWN)
            if value is UNKNOWN or value is None:
                return False
            key.append(value)
        found: list[str] = []
        for col in plan.values:
            value = values.get(col, UNKNOWN)
            if value is UNKNOWN:
                return False
            found.append(column_tag(plan.name, col.name, value))
        if plan.pk:
            tags.add(row_tag(plan.name, key))
        tags.update(found)
        return bool(plan.pk)

    @staticmethod
    def epoch(table: sa.Table | str, tags: set[str]) -> None:
        """``~e:{table}`` (and ``~t:``): a write to ``table`` whose rows are unknown."""
        name = table if isinstance(table, str) else table.fullname
        tags.add(table_tag(name))
        tags.add(epoch_tag(name))

    def rows(
        self, plan: TablePlan, rows: Iterable[Mapping[Any, Any]], tags: set[str]
    ) -> None:
        """Tag rows given as ``{column: value}``; one that cannot be tagged, or more than
        :attr:`max_rows` of them, bump ``~e:{table}`` instead."""
        for count, values in enumerate(rows, 1):
            if count > self.max_rows or not self.row(plan, values, tags):
                self.epoch(plan.table, tags)
                return

    def select(self, plan: TablePlan, condition: Any, run: Any, tags: set[str]) -> list[Any] | None:
        """Read and tag the rows of ``plan.table`` matching ``condition`` (on the
        statement's own connection: ``run``), before they change. Returns their keys
        (tuples), or None when there were too many (``~e`` bumped) or the table has no
        primary key."""
        query = sa.select(*plan.columns)
        if condition is not None:
            query = query.where(condition)
        found = run(query.limit(self.max_rows + 1)).all()
        tags.add(table_tag(plan.name))
        if len(found) > self.max_rows or not plan.pk:
            if found:
                self.epoch(plan.table, tags)
            return None
        keys = []
        for r in found:
            m = r._mapping
            values = {c: m[c] for c in plan.columns}
            if not self.row(plan, values, tags):
                self.epoch(plan.table, tags)
                return None
            keys.append(tuple(values[c] for c in plan.pk))
        return keys

    def reselect(self, plan: TablePlan, keys: Sequence[tuple[Any, ...]], run: Any) -> set[str]:
        """The tags of rows ``keys`` as they are now (after an UPDATE changed them)."""
        tags: set[str] = set()
        if not keys:
            return tags
        pk: Any = plan.pk[0] if len(plan.pk) == 1 else sa.tuple_(*plan.pk)
        flat = [k[0] for k in keys] if len(plan.pk) == 1 else list(keys)
        step = 500
        for i in range(0, len(flat), step):
            query = sa.select(*plan.columns).where(pk.in_(flat[i : i + step]))
            for r in run(query):
                m = r._mapping
                if not self.row(plan, {c: m[c] for c in plan.columns}, tags):
                    self.epoch(plan.table, tags)
        return tags

    # -- the bound of one commit ------------------------------------------------------------------
    def bounded(self, tags: Iterable[str]) -> Iterable[str]:
        """A commit's tags with, for each table with more than :attr:`max_rows` row tags
        (or column-value tags), its ``~r`` / ``~c`` tags replaced by its ``~e`` (every
        reader of the table carries it): at most ``2 x max_rows`` automatic tags per table
        reach the backend, whatever the commit wrote."""
        tags = tags if isinstance(tags, set) else set(tags)
        counts: dict[tuple[str, str], int] = {}
        for tag in tags:
            if _auto_row_tag(tag):
                key = (tag[:3], tag[3:].split(":", 1)[0])
                counts[key] = counts.get(key, 0) + 1
        over = {table for (_, table), n in counts.items() if n > self.max_rows}
        if not over:
            return tags
        kept = {t for t in tags if not (_auto_row_tag(t) and t[3:].split(":", 1)[0] in over)}
        # the names are escaped already: the tags are built from them as they are
        kept.update(f"~e:{name}" for name in over)
        kept.update(f"~t:{name}" for name in over)
        return kept


def _auto_row_tag(tag: str) -> bool:
    """A ``~r:`` or ``~c:`` tag."""
    return tag.startswith(_ROW) or tag.startswith(_COLUMN)
