"""Flushed objects -> automatic tags (``autorows.py``), for every mapped class, tracked or not.

The unit of work's own statements are not read: every object it wrote is in the flush
context, with its values before the flush (``committed_state``, the identity key) and after
(``state.dict``), so no extra SELECT is needed in the usual case. Per object, one tag set per
table it writes (joined inheritance: each table whose columns changed; insert and delete:
every table of the mapper):

* insert: the new key and the new value of each value column;
* update: the old key and the new key, the old and the new value of each value column
  (a value column the update did not change gives its one value: a read ``WHERE
  folder_id = F`` returns the renamed row);
* delete: the old key and the old values.

``before_flush`` (:meth:`AutoFlush.remember`) reads, with one SELECT by key, the value
columns of modified or deleted objects that are not loaded (expired after a commit): the
flush writes without them, and the database still has them. A value the flush cannot know
(a server default, an SQL expression) bumps ``~e:{table}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .autorows import UNKNOWN, AutoWrites, TablePlan
from .sqlexpr import modified_states

__all__ = ["AutoFlush", "LoadedValues"]

#: Per object state: values of attributes not loaded before the flush, read from the row.
LoadedValues = dict[Any, dict[str, Any]]

_NO_VALUE = sa.orm.base.NO_VALUE
_MISSING: Any = object()


@dataclass(frozen=True)
class _TableAttrs:
    """One table of a mapper: its plan, the attribute of each column it tags."""

    plan: TablePlan
    #: ``(column, attribute key or None: not mapped)`` for the plan's columns
    columns: tuple[tuple[sa.Column[Any], str | None], ...]
    #: every attribute mapped to a column of this table (an update writes the table
    #: only if one of them changed)
    attrs: frozenset[str]


@dataclass(frozen=True)
class _MapperPlan:
    tables: tuple[_TableAttrs, ...]
    #: attribute key -> index in the identity key
    identity: dict[str, int]
    #: the attributes the tags need (key and value columns of every table)
    needed: frozenset[str]


class AutoFlush:
    """The flush side of automatic tags (plans cached per mapper)."""

    def __init__(self, auto: AutoWrites) -> None:
        self.auto = auto
        self._plans: dict[Any, tuple[int, _MapperPlan]] = {}

    def _plan(self, mapper: Any) -> _MapperPlan:
        memo = self._plans.get(mapper)
        stamp = self.auto.value_columns.version  # a declaration changes the plans
        if memo is not None and memo[0] == stamp:
            return memo[1]
        tables = []
        needed: set[str] = set()
        for table in mapper.tables:
            plan = self.auto.plan(table)
            cols = []
            for col in plan.columns:
                attr = _attr_of(mapper, col)
                cols.append((col, attr))
                if attr is not None:
                    needed.add(attr)
            attrs = frozenset(a for c in table.columns if (a := _attr_of(mapper, c)) is not None)
            tables.append(_TableAttrs(plan, tuple(cols), attrs))
        identity = {}
        for i, col in enumerate(mapper.primary_key):
            attr = _attr_of(mapper, col)
            if attr is not None:
                identity[attr] = i
        found = _MapperPlan(tuple(tables), identity, frozenset(needed))
        self._plans[mapper] = (stamp, found)
        return found

    def remember(self, session: Session, loaded: LoadedValues) -> None:
        """``before_flush``: the value columns of modified / deleted objects not loaded."""
        for group in (modified_states(session), [sa.inspect(o) for o in session.deleted]):
            for state in list(group):
                if state.key is None or state in loaded:
                    continue
                plan = self._plan(state.mapper)
                data, committed = state.dict, state.committed_state
                unknown = [
                    a
                    for a in plan.needed
                    if a not in plan.identity
                    and (a not in data or (committed and committed.get(a) is _NO_VALUE))
                ]
                if unknown:
                    loaded[state] = _load(session, state, unknown)

    def collect(self, flush_context: Any, loaded: LoadedValues, tags: set[str]) -> None:
        """``after_flush``: the automatic tags of every object the flush wrote
        (``loaded`` is used up)."""
        states = getattr(flush_context, "states", None) or {}
        auto = self.auto
        for state, (isdelete, listonly) in states.items():
            if listonly and not isdelete:
                continue
            plan = self._plan(state.mapper)
            data, committed = state.dict, state.committed_state
            extra = loaded.get(state) if loaded else None
            if isdelete:
                kind = "delete"
            elif state.key is None:
                kind = "insert"
            else:
                kind = "update"
                if not committed:
                    continue  # nothing of it written (a collection of it changed)
            for tbl in plan.tables:
                if kind == "update" and not (committed.keys() & tbl.attrs):
                    continue  # no column of this table changed: not written
                new: dict[Any, Any] = {}
                old: dict[Any, Any] = {}
                for col, attr in tbl.columns:
                    if attr is None:
                        new[col] = old[col] = UNKNOWN
                        continue
                    now = data.get(attr, _MISSING)
                    if now is _MISSING and extra is not None:
                        now = extra.get(attr, _MISSING)
                    if now is _MISSING:
                        index = plan.identity.get(attr)
                        if index is not None and state.key is not None:
                            now = state.key[1][index]
                        elif kind == "insert" and _no_default(col):
                            now = None  # not set, no default: NULL
                        else:
                            now = UNKNOWN
                    if isinstance(now, sa.sql.ClauseElement):
                        now = UNKNOWN
                    before = committed.get(attr, _MISSING) if committed else _MISSING
                    if before is _NO_VALUE:  # set while not loaded: read in before_flush
                        before = extra.get(attr, UNKNOWN) if extra is not None else UNKNOWN
                    elif before is _MISSING:
                        before = now  # unchanged
                    index = plan.identity.get(attr)
                    if index is not None and state.key is not None and kind != "insert":
                        before = state.key[1][index]  # the row's key before this flush
                    new[col], old[col] = now, before
                if kind != "insert" and not auto.row(tbl.plan, old, tags):
                    auto.epoch(tbl.plan.table, tags)
                if kind != "delete" and not auto.row(tbl.plan, new, tags):
                    auto.epoch(tbl.plan.table, tags)
        if loaded:
            loaded.clear()


def _no_default(col: sa.Column[Any]) -> bool:
    return col.server_default is None and col.default is None


def _attr_of(mapper: Any, column: sa.Column[Any]) -> str | None:
    try:
        prop = mapper.get_property_by_column(column)
    except sa.orm.exc.UnmappedColumnError:
        return None
    return prop.key  # type: ignore[no-any-return]


def _load(session: Session, state: Any, attrs: list[str]) -> dict[str, Any]:
    """The database's values of ``attrs`` for the row of ``state`` (one SELECT by key, on
    the mapper's bind)."""
    mapper = state.mapper
    cols = []
    for attr in attrs:
        columns = getattr(mapper.attrs.get(attr), "columns", None)
        if columns:
            cols.append((attr, columns[0]))
    if not cols or state.identity is None:
        return {}
    where = [c == v for c, v in zip(mapper.primary_key, state.identity, strict=True)]
    query = sa.select(*[c for _, c in cols]).select_from(mapper.persist_selectable).where(*where)
    with session.no_autoflush:
        row = session.execute(query, bind_arguments={"mapper": mapper}).first()
    if row is None:
        return {}
    return {attr: value for (attr, _), value in zip(cols, row, strict=True)}
