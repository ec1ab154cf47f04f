"""Association tables (many-to-many): what adding, removing or changing a link invalidates.

A row of an association table (``favorites(user_id, article_id)``, a self-referential
``follows(follower_id, followed_id)``) links two rows. A change of such a row, however it
is made, is a change of **both rows it links**: each foreign key that references a tracked
model (a *side*) counts as an ``update`` of the referenced row, so it gets the tags that
row's own declaration gives an update (``{entity}:{id}``, ``{entity}:list``, its parents'
tags, its ``members`` and its ``cache_tags`` hook). A view that lists one side's related
rows ("the articles user 7 favorited") therefore carries the entity tag of the row whose
list it is (``account:7``), exactly like a listing of a row's children.

This module owns:

* the declaration of an association table, ``cache.track(table, entity=..., parents=...,
  sides=..., list_tag=...)`` (:func:`make_rule` -> :class:`AssociationRule`, kept in the
  :class:`~flask_dataroom_cache.rules.Registry`): a declared table adds its own tags
  (``type:{entity}``, ``{entity}:list``) and one ``parent_tag(type, value)`` per column
  named in ``parents=`` (``{"user_id": "user"}`` -> the per-user tag ``user:{id}``);
  ``sides=`` chooses which foreign keys count as sides (default: all);
* the detection of association tables nobody declared (:class:`AssociationIndex`): an
  untracked table that is the ``secondary=`` of a relationship, or an unmapped table with
  two or more foreign-key columns, whose foreign keys reference tracked models;
* turning association rows into tags (:func:`statement_tags`, :func:`condition_tags`).

The tracker (:mod:`flask_dataroom_cache.tracking`) finds the rows and calls these: the unit
of work's own secondary ``INSERT``/``DELETE``/``UPDATE`` (an ORM collection append or
remove from either side, a backref pair, the ORM removing the rows of a deleted object) and
Core DML on the table reach its engine ``before_execute`` listener; rows the database
deletes with a side (``ON DELETE CASCADE``) its cascade reader. Tags join the transaction's
pending set like any other: sent after the commit, dropped on rollback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql import dml

from .rule_checks import check_names
from .rules import parent_tag
from .tags import EPOCH_TAG, list_tag, type_tag

if TYPE_CHECKING:
    from .rules import Registry
    from .tracking import _TableInfo

__all__ = [
    "Association",
    "AssociationIndex",
    "AssociationRule",
    "Reader",
    "condition_tags",
    "make_rule",
    "statement_tags",
]

#: Above this many distinct referenced rows of one side in one statement, ``type:{entity}``
#: and ``{entity}:list`` stand for their tags (same cap as bulk statements).
SIDE_ROW_CAP = 1000


@dataclass(frozen=True)
class AssociationRule:
    """The declaration of one association table (or the default of a detected one)."""

    table: sa.Table
    #: None for a detected (undeclared) table: it has no tags of its own
    entity: str | None
    #: column key -> parent type: ``parent_tag(type, value)`` for each row's value
    parents: Mapping[str, str] = field(default_factory=dict)
    #: column keys whose foreign keys count as sides; None: every foreign key
    sides: frozenset[str] | None = None
    list_tag: bool = True


def make_rule(
    table: Any,
    *,
    entity: str | None = None,
    parents: Mapping[str, str] | None = None,
    sides: bool | Iterable[str] = True,
    list_tag: bool = True,
) -> AssociationRule:
    """Check and build the declaration ``cache.track(table, ...)``: every column named in
    ``parents`` or ``sides`` must be a column of the table (``ValueError`` names both)."""
    if not isinstance(table, sa.Table):
        raise TypeError(f"track() needs a model class or a Table, got {table!r}")
    name = entity if entity is not None else table.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"track({table.name}): invalid entity name {name!r}")
    parents = dict(parents or {})
    check_names(table, name, parents.values())  # reserved namespaces, as for models
    columns = set(table.c.keys())
    for col, ptype in parents.items():
        if not isinstance(ptype, str) or not ptype:
            raise ValueError(
                f"track({table.name}): parents must map column names to entity types, "
                f"got {col!r}: {ptype!r}"
            )
        if col not in columns:
            raise ValueError(
                f"track({table.name}): parents names {col!r}, which is not a column of "
                f"{table.name} (columns: {', '.join(sorted(columns))})"
            )
    chosen: frozenset[str] | None
    if sides is True:
        chosen = None
    elif sides is False or sides is None:
        chosen = frozenset()
    elif isinstance(sides, str):
        raise TypeError(f"track({table.name}): sides is True, False or a list of column names")
    else:
        chosen = frozenset(sides)
        for col in chosen:
            if col not in columns:
                raise ValueError(
                    f"track({table.name}): sides names {col!r}, which is not a column of "
                    f"{table.name} (columns: {', '.join(sorted(columns))})"
                )
    if not isinstance(list_tag, bool):
        raise TypeError(f"track({table.name}): list_tag must be True or False")
    return AssociationRule(table, name, parents, chosen, list_tag)


@dataclass(frozen=True)
class Side:
    """One foreign key of an association table referencing a tracked table."""

    columns: tuple[str, ...]  # association column keys (one foreign key constraint)
    info: _TableInfo  # the referenced tracked table
    ref_cols: tuple[sa.Column[Any], ...]  # the referenced columns
    by_id: bool  # it references the rule's id column alone: values are ids


@dataclass(frozen=True)
class Association:
    """An association table resolved against the tracked tables."""

    rule: AssociationRule
    sides: tuple[Side, ...]
    #: every group of columns whose values give tags: each side's, each parent column
    groups: tuple[tuple[str, ...], ...]
    #: the table columns to read for those groups
    columns: tuple[sa.Column[Any], ...]

    def own_tags(self, tags: set[str]) -> None:
        entity = self.rule.entity
        if entity is not None:
            tags.add(type_tag(entity))
            if self.rule.list_tag:
                tags.add(list_tag(entity))

    def text_tags(self, tags: set[str]) -> None:
        """A textual statement on the table: its rows are unknown, so its own type and list
        tags and each side's (like a textual write to a tracked table)."""
        self.own_tags(tags)
        for side in self.sides:
            rule = side.info.rule
            tags.add(type_tag(rule.entity))
            if rule.list_tag:
                tags.add(list_tag(rule.entity))


@dataclass(frozen=True)
class Reader:
    """How tags are read from the database, inside the statement's transaction."""

    #: execute a SELECT (on the statement's connection / session)
    run: Callable[[Any], Any]
    #: ``(info, ids, kind, tags)``: members and ``cache_tags`` of rows loaded as objects
    objects: Callable[[_TableInfo, list[Any], str, set[str]], None]


class AssociationIndex:
    """Which tables are association tables, for one tracker: the declared ones and the
    detected ones, resolved against the tracked tables. Rebuilt when the registry changes
    (``track()``) or a metadata gains a table."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._map: dict[sa.Table, Association] = {}
        self._metas: list[sa.MetaData] = []
        self._sig: tuple[int, int] | None = None

    def _signature(self) -> tuple[int, int]:
        return (self._registry.version, sum(len(md.tables) for md in self._metas))

    def get(self, table: Any, infos: Mapping[sa.Table, _TableInfo | None]) -> Association | None:
        if self._sig != self._signature():
            self._build(infos)
        return self._map.get(table)

    def all(self, infos: Mapping[sa.Table, _TableInfo | None]) -> dict[sa.Table, Association]:
        if self._sig != self._signature():
            self._build(infos)
        return self._map

    def _build(self, infos: Mapping[sa.Table, _TableInfo | None]) -> None:
        tracked = {t: i for t, i in infos.items() if i is not None}
        declared: dict[sa.Table, AssociationRule] = dict(self._registry.tables)
        metas = list({id(t.metadata): t.metadata for t in (*tracked, *declared)}.values())
        mapped: set[Any] = set()
        secondaries: set[Any] = set()
        registries: dict[int, Any] = {}
        for info in tracked.values():
            try:
                reg: Any = sa.inspect(info.rule.model).registry
            except Exception:  # pragma: no cover - not a mapped class
                continue
            registries[id(reg)] = reg
        for reg in registries.values():
            for mapper in reg.mappers:
                mapped.update(mapper.tables)
                try:
                    relationships = list(mapper.relationships)
                except Exception:  # a mapping that fails to configure: not ours to raise
                    continue
                for rel in relationships:
                    if isinstance(rel.secondary, sa.Table):
                        secondaries.add(rel.secondary)
        candidates: dict[sa.Table, None] = dict.fromkeys(declared)
        candidates.update(dict.fromkeys(secondaries))
        for md in metas:
            for table in md.tables.values():
                fk_columns = sum(len(f.elements) for f in table.foreign_key_constraints)
                if table not in mapped and fk_columns >= 2:
                    candidates[table] = None
        found: dict[sa.Table, Association] = {}
        for table in candidates:
            if table in tracked:
                continue  # a tracked model's own table: its rule applies
            rule = declared.get(table) or AssociationRule(table, None)
            sides = _sides(table, rule, tracked)
            if not sides and table not in declared:
                continue
            groups = tuple(
                dict.fromkeys([*(s.columns for s in sides), *((k,) for k in rule.parents)])
            )
            cols = tuple(table.c[k] for k in dict.fromkeys(k for g in groups for k in g))
            found[table] = Association(rule, sides, groups, cols)
        self._map = found
        self._metas = metas
        self._sig = self._signature()


def _sides(
    table: sa.Table, rule: AssociationRule, tracked: Mapping[sa.Table, _TableInfo]
) -> tuple[Side, ...]:
    out = []
    for fkc in table.foreign_key_constraints:
        keys = tuple(fk.parent.key for fk in fkc.elements)
        if not keys or (rule.sides is not None and not set(keys) & rule.sides):
            continue
        try:
            refs = tuple(fk.column for fk in fkc.elements)
        except sa.exc.SQLAlchemyError:  # unresolvable reference
            continue
        info = tracked.get(refs[0].table)  # type: ignore[call-overload]
        if info is None:
            continue
        by_id = len(refs) == 1 and info.id_col is not None and refs[0] is info.id_col
        out.append(Side(keys, info, refs, by_id))
    return tuple(out)


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
    rule = side.info.rule
    tags.add(type_tag(rule.entity))
    if rule.list_tag:
        tags.add(list_tag(rule.entity))


def _side_tags(side: Side, found: set[Any], reader: Reader, tags: set[str]) -> None:
    """The tags of an update of every referenced row (``found``: their key values)."""
    info = side.info
    rule = info.rule
    if side.by_id:  # the entity tags need no read
        for value in found:
            rule.collect(tags, None, "update", {rule.id_attr: value})
        if not info.parent_cols and not rule.needs_obj:  # type: ignore[attr-defined]
            return
    cols = [c for c in dict.fromkeys((info.id_col, *info.parent_cols.values())) if c is not None]
    if not cols:
        _side_type_tags(side, tags)
        return
    ref: Any = side.ref_cols[0] if len(side.ref_cols) == 1 else sa.tuple_(*side.ref_cols)
    keys = list(found)
    ids: list[Any] = []
    for start in range(0, len(keys), 500):
        query = sa.select(*cols).where(ref.in_(keys[start : start + 500]))
        for row in reader.run(query):
            m = row._mapping
            current = {a: m[c] for a, c in info.parent_cols.items()}
            if info.id_col is not None:
                current[rule.id_attr] = m[info.id_col]
                ids.append(m[info.id_col])
            rule.collect(tags, None, "update", current)
    if info.id_col is None:
        tags.add(type_tag(rule.entity))
    if ids and rule.needs_obj:  # type: ignore[attr-defined]
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
    from .tracking import _bind_columns, _literal_row, _literal_values, _set_keys

    tags: set[str] = set()
    assoc.own_tags(tags)
    values = _Values(assoc)
    table = assoc.rule.table
    literal = _literal_values(stmt)
    binds = _bind_columns(stmt)
    computed = _computed_columns(stmt)
    if isinstance(stmt, dml.Insert):
        for params in rows_params or [{}]:
            row = {**literal, **{binds.get(k, k): v for k, v in params.items()}}
            row.update(dict.fromkeys(computed, _SQL))
            values.add(row)
        for group in getattr(stmt, "_multi_values", None) or ():
            for r in group:
                if isinstance(r, Mapping):
                    values.add(_literal_row(r))
        select = getattr(stmt, "select", None)
        names = getattr(stmt, "_select_names", None)
        if select is not None and names:
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
        set_keys = _set_keys(stmt)
        columns = set(table.c.keys())
        for params in rows_params or [{}]:
            if set_keys is None:  # no values(): the parameters are the SET clause
                new = {k: v for k, v in params.items() if k in columns}
            else:
                new = {k: v for k, v in literal.items() if k in set_keys}
                new.update(
                    {binds[b]: v for b, v in params.items() if b in binds and binds[b] in set_keys}
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
    items = [*(getattr(stmt, "_values", None) or {}).items()]
    items += list(getattr(stmt, "_ordered_values", None) or [])
    for k, v in items:
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
    from sqlalchemy.sql import operators
    from sqlalchemy.sql.elements import BinaryExpression, BindParameter, BooleanClauseList

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
