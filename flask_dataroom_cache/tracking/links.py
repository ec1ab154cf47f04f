"""Association rows -> tags: a link added, removed or changed is an update of both rows.

For each row of an association table (``associations.py``) that a statement adds, removes
or changes, every side's referenced row gets the tags its own declaration gives an update
(``{entity}:{id}``, ``{entity}:list``, its parents' tags, its ``members`` and its
``cache_tags`` hook); a declared table adds its own tags (``type:{entity}``,
``{entity}:list``) and one ``parent_tag(type, value)`` per column in ``parents=``. A view
that lists one side's related rows ("the articles user 7 favorited") therefore carries the
entity tag of the row whose list it is (``account:7``).

Where the rows come from: the unit of work's own secondary ``INSERT``/``DELETE``/``UPDATE``
and Core DML (:func:`statement_tags`, from the parameters when the WHERE names every column
by parameter, else read before the statement runs), rows the database deletes with a side
(:func:`condition_tags`, from the cascade reader). Above :data:`SIDE_ROW_CAP` referenced
rows of one side, that side's type tags stand for them; a link set to a value computed in
SQL bumps the epoch (rare).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql import dml, operators
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, BooleanClauseList

from ..rules import parent_tag
from ..tags import EPOCH_TAG, type_tag
from . import rows
from .rows import ConnectionOf, Run, coarse_tags
from .sqlexpr import (
    bind_columns,
    in_chunks,
    insert_from_select,
    literal_values,
    multi_values_rows,
    set_items,
    set_keys,
)

if TYPE_CHECKING:
    from .associations import Association, Side
    from .rows import TableInfo

__all__ = ["SIDE_ROW_CAP", "Reader", "condition_tags", "statement_tags"]

#: Above this many distinct referenced rows of one side in one statement, ``type:{entity}``
#: and ``{entity}:list`` stand for their tags (same cap as bulk statements).
SIDE_ROW_CAP = 1000


@dataclass(frozen=True)
class Reader:
    """How tags are read from the database, inside the statement's transaction."""

    #: execute a SELECT (on the statement's connection / session)
    run: Callable[[Any], Any]
    #: ``(info, ids, kind, tags)``: members and ``cache_tags`` of rows loaded as objects
    objects: Callable[[TableInfo, list[Any], str, set[str]], None]

    @classmethod
    def on(cls, run: Run, connection: ConnectionOf) -> Reader:
        """Reads with ``run``; loads objects on ``connection()`` (:func:`.rows.object_tags`)."""

        def objects(info: TableInfo, ids: list[Any], kind: str, tags: set[str]) -> None:
            rows.object_tags(info, ids, kind, connection, tags)

        return cls(run, objects)


class _Values:
    """The values each group of columns had in the rows a statement changes."""

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self.found: dict[tuple[str, ...], set[Any]] = {g: set() for g in assoc.groups}
        self.overflow: set[tuple[str, ...]] = set()  # too many rows: type tags stand for them
        self.unknown = False  # a value only the database knows (an SQL expression)

    def add(self, row: Mapping[str, Any]) -> None:
        for group in self.assoc.groups:
            if len(group) == 1:
                value = row.get(group[0])
                if value is _SQL:
                    self.unknown = True
                elif value is not None:
                    self.found[group].add(value)
                continue
            values = tuple(row.get(k) for k in group)
            present = [k in row for k in group]
            if any(v is _SQL for v in values):
                self.unknown = True
            elif all(v is not None for v in values):
                self.found[group].add(values)
            elif any(present) and not all(present):
                self.unknown = True  # a composite key partly set: the whole is unknown

    def add_select(self, cols: Sequence[sa.Column[Any]], rows: Iterable[Any]) -> None:
        for r in rows:
            m = r._mapping
            self.add({c.key: m[c] for c in cols})


#: marks a column set to an SQL expression (its value is known only to the database)
_SQL: Any = object()


def _tags(values: _Values, reader: Reader, tags: set[str]) -> None:
    assoc = values.assoc
    if values.unknown:
        tags.add(EPOCH_TAG)  # rare: a link set to a value computed in SQL
    for key, ptype in assoc.rule.parents.items():
        tags.update(parent_tag(ptype, v) for v in values.found.get((key,), ()))
    for side in assoc.sides:
        found = values.found.get(side.columns, set())
        if side.columns in values.overflow or len(found) > SIDE_ROW_CAP:
            _side_type_tags(side, tags)
        elif found:
            _side_tags(side, found, reader, tags)


def _side_type_tags(side: Side, tags: set[str]) -> None:
    coarse_tags(side.info.rule, tags)


def _side_tags(side: Side, found: set[Any], reader: Reader, tags: set[str]) -> None:
    """The tags of an update of every referenced row (``found``: their key values)."""
    info = side.info
    rule = info.rule
    if side.by_id:  # the entity tags need no read
        for value in found:
            rule.collect(tags, None, "update", {rule.id_attr: value})
        if not info.parent_cols and not rule.needs_obj:
            return
    cols = [c for c in dict.fromkeys((info.id_col, *info.parent_cols.values())) if c is not None]
    if not cols:
        _side_type_tags(side, tags)
        return
    ref: Any = side.ref_cols[0] if len(side.ref_cols) == 1 else sa.tuple_(*side.ref_cols)
    ids: list[Any] = []
    for condition in in_chunks(ref, list(found)):
        for row in reader.run(sa.select(*cols).where(condition)):
            m = row._mapping
            current = {a: m[c] for a, c in info.parent_cols.items()}
            if info.id_col is not None:
                current[rule.id_attr] = m[info.id_col]
                ids.append(m[info.id_col])
            rule.collect(tags, None, "update", current)
    if info.id_col is None:
        tags.add(type_tag(rule.entity))
    if ids and rule.needs_obj:
        reader.objects(info, ids, "update", tags)


def condition_tags(
    assoc: Association,
    cond: Any,
    reader: Reader,
    tags: set[str],
    rows: Sequence[Any] | None = None,
) -> None:
    """Tags for the association rows matching ``cond`` (read before they are deleted or
    changed). ``rows``: those rows already read with :attr:`Association.columns` (at most
    the cap + 1; more -> read again, ``DISTINCT`` per group)."""
    assoc.own_tags(tags)
    values = _Values(assoc)
    _read(assoc, cond, reader, values, rows)
    _tags(values, reader, tags)


def _read(
    assoc: Association, cond: Any, reader: Reader, values: _Values, rows: Sequence[Any] | None
) -> None:
    cols = assoc.columns
    if not cols:
        return
    if rows is None:
        query = sa.select(*cols)
        if cond is not None:
            query = query.where(cond)
        rows = reader.run(query.limit(SIDE_ROW_CAP + 1)).all()
    if len(rows) <= SIDE_ROW_CAP:
        values.add_select(cols, rows)
        return
    table = assoc.rule.table
    for group in assoc.groups:
        gcols = [table.c[k] for k in group]
        query = sa.select(*gcols).distinct()
        if cond is not None:
            query = query.where(cond)
        is_side = any(s.columns == group for s in assoc.sides)
        if is_side:
            query = query.limit(SIDE_ROW_CAP + 1)
        found = reader.run(query).all()
        if is_side and len(found) > SIDE_ROW_CAP:
            values.overflow.add(group)
            continue
        values.add_select(gcols, found)


def statement_tags(
    assoc: Association,
    stmt: Any,
    rows_params: Sequence[Mapping[str, Any]] | None,
    cond: Any,
    reader: Reader,
) -> set[str]:
    """Tags for an INSERT / UPDATE / DELETE on an association table: the rows it removes
    or changes (read before it runs, with ``cond``: the tracker's condition matching
    them; or taken from the parameters when the WHERE names every column by parameter,
    as the unit of work's own statements do), and the rows it adds or the new values."""
    tags: set[str] = set()
    assoc.own_tags(tags)
    values = _Values(assoc)
    table = assoc.rule.table
    literal = literal_values(stmt)
    binds = bind_columns(stmt)
    computed = _computed_columns(stmt)
    if isinstance(stmt, dml.Insert):
        for params in rows_params or [{}]:
            row = {**literal, **{binds.get(k, k): v for k, v in params.items()}}
            row.update(dict.fromkeys(computed, _SQL))
            values.add(row)
        for row in multi_values_rows(stmt):
            values.add(row)
        from_select = insert_from_select(stmt)
        if from_select is not None:
            select, names = from_select
            sub = select.subquery()
            by_name = dict(zip(names, sub.c, strict=False))
            _read_from_select(assoc, sub, by_name, reader, values)
        _tags(values, reader, tags)
        return tags
    old = _param_rows(table, assoc.groups, stmt.whereclause, rows_params)
    if old is not None:
        for row in old:
            values.add(row)
    else:
        _read(assoc, cond, reader, values, None)
    if isinstance(stmt, dml.Update):
        keys = set_keys(stmt)
        columns = set(table.c.keys())
        for params in rows_params or [{}]:
            if keys is None:  # no values(): the parameters are the SET clause
                new = {k: v for k, v in params.items() if k in columns}
            else:
                new = {k: v for k, v in literal.items() if k in keys}
                new.update(
                    {binds[b]: v for b, v in params.items() if b in binds and binds[b] in keys}
                )
            new.update(dict.fromkeys(computed, _SQL))
            values.add(new)
    _tags(values, reader, tags)
    return tags


def _read_from_select(
    assoc: Association, sub: Any, by_name: Mapping[str, Any], reader: Reader, values: _Values
) -> None:
    """``INSERT ... SELECT``: the rows it adds, read with the same SELECT (DISTINCT)."""
    wanted = [k for k in dict.fromkeys(k for g in assoc.groups for k in g) if k in by_name]
    if not wanted:
        return
    query = sa.select(*[by_name[k].label(k) for k in wanted]).distinct()
    found = reader.run(query.limit(SIDE_ROW_CAP + 1)).all()
    if len(found) <= SIDE_ROW_CAP:
        for r in found:
            values.add(dict(r._mapping))
        return
    for group in assoc.groups:
        if not all(k in by_name for k in group):
            continue
        query = sa.select(*[by_name[k].label(k) for k in group]).distinct()
        is_side = any(s.columns == group for s in assoc.sides)
        if is_side:
            query = query.limit(SIDE_ROW_CAP + 1)
        rows = reader.run(query).all()
        if is_side and len(rows) > SIDE_ROW_CAP:
            values.overflow.add(group)
            continue
        for r in rows:
            values.add(dict(r._mapping))


def _computed_columns(stmt: Any) -> list[str]:
    """Columns an INSERT/UPDATE sets to an SQL expression (not a literal, not a parameter)."""
    out = []
    for k, v in set_items(stmt):
        key = k if isinstance(k, str) else getattr(k, "key", None)
        if key is None or v is None or isinstance(v, str | int | float):
            continue
        if isinstance(v, sa.sql.elements.BindParameter):
            continue
        if isinstance(v, sa.sql.elements.ClauseElement):
            out.append(str(key))
    return out


def _param_rows(
    table: sa.Table,
    groups: Iterable[tuple[str, ...]],
    where: Any,
    rows_params: Sequence[Mapping[str, Any]] | None,
) -> list[dict[str, Any]] | None:
    """The rows a DELETE/UPDATE matches, from its parameters, when its WHERE is
    ``col = :param AND ...`` over columns of the table and every parameter row gives
    every one (the unit of work's secondary statements); else None (read them)."""
    if where is None or not rows_params:
        return None
    clauses = list(where.clauses) if isinstance(where, BooleanClauseList) else [where]
    if isinstance(where, BooleanClauseList) and where.operator is not operators.and_:
        return None
    pairs: dict[str, str] = {}  # bind key -> column key
    for clause in clauses:
        if not isinstance(clause, BinaryExpression) or clause.operator is not operators.eq:
            return None
        left, right = clause.left, clause.right
        if isinstance(left, BindParameter):
            left, right = right, left
        if (
            not isinstance(left, sa.Column)
            or left.table is not table
            or not isinstance(right, BindParameter)
            or right.value is not None
            or right.callable is not None
        ):
            return None
        pairs[right.key] = left.key
    if not {k for group in groups for k in group} <= set(pairs.values()):
        return None  # a column the tags need is not in the WHERE: read the rows
    rows = []
    for params in rows_params:
        if not all(k in params for k in pairs):
            return None
        rows.append({col: params[b] for b, col in pairs.items()})
    return rows
