"""Automatic dependency tags: the names shared by the read side and the write side.

An entry computed with automatic dependencies (issue 17, docs/auto-tags.md) carries tags
derived from the SQL its computation ran; every write on a tracked engine bumps tags
derived from the rows it changed. Both sides build their names here and only here, so a
read's tag and a write's tag meet exactly when the write can change what the read saw.

=============================  ===========================================================
Tag                            Bumped by (write side) / carried by (read side)
=============================  ===========================================================
``~t:{table}``                 every write to the table (any row) / an entry that read the
                               table with no usable key predicate (ranges, LIKE, joins,
                               aggregates, subqueries)
``~r:{table}:{pk}``            an INSERT, UPDATE or DELETE of the row with that primary key
                               (old and new key, if the key changed) / an entry that read
                               the table by primary-key equality (``session.get``, lazy
                               loads, ``WHERE id = :x``, ``IN``), one tag per key value
``~c:{table}:{column}={v}``    a write to a row whose *old or new* value of ``column`` is
                               ``v`` (whatever columns the write changed) / an entry that
                               read the table by equality on that column (a foreign key, or
                               a column declared indexable), one tag per value
``~e:{table}``                 a write to the table that cannot be attributed to rows
                               (opaque textual SQL, a procedure) / every entry that read
                               the table, whatever its predicate
=============================  ===========================================================

Table names are the table's ``fullname`` (``schema.table`` when a schema is set). Values
are normalised by :func:`value_text` so the same value gives the same text on both sides
(a bind parameter ``5`` and an ORM attribute ``5``; ``Decimal("1.0")`` and ``1``).
Every part is escaped (``keys.escape``), so no value can forge another tag.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from .keys import escape as _escape

__all__ = [
    "AUTO_PREFIXES",
    "ValueColumns",
    "column_tag",
    "epoch_tag",
    "row_tag",
    "table_tag",
    "value_text",
]

#: The namespaces of automatic tags (reserved: no declared tag or entity may use them).
AUTO_PREFIXES = ("~t:", "~r:", "~c:", "~e:")


def escape(text: str) -> str:
    """``keys.escape``, plus ``,`` (the separator of a composite key's values)."""
    out = _escape(text)
    return out.replace(",", "%2C") if "," in out else out


def value_text(value: Any) -> str:
    """The canonical text of one column value (the same for equal values of one column).

    Integral numbers of any type (``1``, ``1.0``, ``Decimal("1.00")``, ``True``) share one
    text, so a value bound by a query and the same value read from an ORM attribute meet.
    """
    if value is None:
        return "~null"
    cls = type(value)
    if cls is int:
        return str(value)
    if cls is str:
        return escape(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float | Decimal):
        if value == value and value not in (float("inf"), float("-inf")) and value == int(value):
            return str(int(value))
        return escape(str(Decimal(str(value)).normalize()))
    if isinstance(value, str):
        return escape(str(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return "x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime | date | time):
        return escape(value.isoformat())
    return escape(str(value))


def table_tag(table: str) -> str:
    """``~t:{table}``: any write to ``table``."""
    return f"~t:{escape(table)}"


def epoch_tag(table: str) -> str:
    """``~e:{table}``: a write to ``table`` whose rows are unknown; every reader carries it."""
    return f"~e:{escape(table)}"


def row_tag(table: str, pk: Sequence[Any]) -> str:
    """``~r:{table}:{pk}``: the row of ``table`` with primary key ``pk`` (its column values
    in the table's primary-key order; one value for a single-column key)."""
    return f"~r:{escape(table)}:" + ",".join(value_text(v) for v in pk)


def column_tag(table: str, column: str, value: Any) -> str:
    """``~c:{table}:{column}={value}``: rows of ``table`` whose ``column`` equals ``value``."""
    return f"~c:{escape(table)}:{escape(column)}={value_text(value)}"


class ValueColumns:
    """Which columns of a table give column-value tags (``~c:``): its foreign-key columns,
    plus the columns declared indexable (``declare``). The read side turns an equality on
    one of them into a column dependency (anything else is a table dependency); the write
    side bumps their old and new values. Both ask this one object, so they always agree.
    One per :class:`~flask_dataroom_cache.DataRoomCache`; declarations are made at import
    or setup time, before requests."""

    def __init__(self) -> None:
        self._declared: dict[str, frozenset[str]] = {}
        self._memo: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()
        #: Incremented by every :meth:`declare` (callers memoising per table compare it).
        self.version = 0

    def declare(self, table: str, columns: Iterable[str]) -> None:
        """Declare ``columns`` of ``table`` (its ``fullname``) indexable."""
        names = frozenset(columns)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"declare indexable columns of {table!r} by their names")
        self._declared[table] = self._declared.get(table, frozenset()) | names
        self._memo = weakref.WeakKeyDictionary()
        self.version += 1

    def index(self, target: Any, columns: Iterable[str]) -> None:
        """Declare ``columns`` of ``target`` (a mapped class or a ``Table``) indexable,
        by column name or mapped attribute name. Raises ``ValueError`` naming the table and
        the column when one is not a column of it (``cache.index_columns``)."""
        import sqlalchemy as sa

        names = list(columns)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"index_columns({target!r}, ...): give column names")
        if isinstance(target, sa.Table):
            tables, mapper = [target], None
        else:
            try:
                mapper = sa.inspect(target)
                tables = list(mapper.tables)
            except Exception:
                raise ValueError(
                    f"index_columns: {target!r} is neither a mapped class nor a Table"
                ) from None
        for name in names:
            column = None
            prop = mapper.attrs.get(name) if mapper is not None else None
            found = getattr(prop, "columns", None)
            if found and isinstance(found[0], sa.Column) and found[0].table in tables:
                column = found[0]
            for table in tables:
                if column is None and name in table.c:
                    column = table.c[name]
            if column is None:
                where = ", ".join(t.fullname for t in tables)
                raise ValueError(f"index_columns: table {where!r} has no column {name!r}")
            self.declare(column.table.fullname, [column.name])

    def of(self, table: Any) -> frozenset[str]:
        """The value columns of a SQLAlchemy ``Table`` (foreign keys + declared)."""
        found = self._memo.get(table)
        if found is None:
            fks = {c.name for c in table.columns if c.foreign_keys}
            found = frozenset(fks | self._declared.get(table.fullname, frozenset()))
            self._memo[table] = found
        return found
