"""Bulk ORM and Core DML -> automatic tags (``autorows.py``), for every table.

Where the rows come from, always on the statement's own connection (its bind, inside its
transaction):

* INSERT (Core, ORM bulk, ``insert(Model).values(...)``, the unit of work of a session the
  tracker does not own): once it ran (:meth:`AutoStatements.after`), from the parameters
  it was executed with (defaults included) and the keys the database returned
  (``inserted_primary_key_rows``), for the table the compiled statement writes. A key or a
  value column it cannot know (an executemany without RETURNING, a server default, an
  SQL expression, ``INSERT ... SELECT``, an upsert that may overwrite a row) bumps
  ``~e:{table}``;
* Core UPDATE / DELETE: the matched rows are read before it runs (one SELECT of its WHERE,
  per-row criteria of an executemany folded into one, at most the row bound + 1: more
  bump ``~e``); an UPDATE's rows are read again by key once it ran (their new values); a
  DELETE's database cascades (``autocascades.py``);
* ORM UPDATE / DELETE (``session.execute(update(Model)...)``, by primary key with a list
  of parameter rows): read the same way through the mapper's selectable, in
  ``do_orm_execute`` (:meth:`AutoStatements.orm`), tagging every table of the mapper;
  the Core statements the ORM emits for it are not read again. An ORM UPDATE / DELETE
  from a session the tracker does not own bumps ``~e`` of the entity's tables.

An UPDATE that sets a primary-key column bumps ``~e:{table}`` (the new keys are not
re-read).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import dml

from ..tags import EPOCH_TAG
from .autocascades import cascade_tags, has_cascades, reachable_epochs
from .autorows import UNKNOWN, AutoWrites, TablePlan
from .sqlexpr import (
    compiled_dml_table,
    insert_from_select,
    is_orm_statement,
    is_upsert,
    multi_values_rows,
    plain_table,
    set_keys,
)
from .statements import rows_condition

__all__ = ["AfterUpdate", "AutoStatements"]


@dataclass(slots=True)
class AfterUpdate:
    """An UPDATE's matched rows, read again by key once it ran."""

    plans: tuple[TablePlan, ...]
    #: the selectable to read them from (a mapper's, or the table)
    source: Any
    pk: tuple[sa.Column[Any], ...]
    keys: list[tuple[Any, ...]]


class AutoStatements:
    """Statements -> automatic tags, for one tracker."""

    def __init__(self, auto: AutoWrites) -> None:
        self.auto = auto

    # -- Core (engine events) -----------------------------------------------------------------
    def before(
        self, stmt: Any, rows_params: Sequence[Mapping[str, Any]], run: Callable[[Any], Any]
    ) -> tuple[set[str], AfterUpdate | None]:
        """An UPDATE / DELETE about to run: its old rows' tags, and what to read after."""
        tags: set[str] = set()
        if isinstance(stmt, dml.Insert):
            return tags, None
        if is_orm_statement(stmt):
            if not getattr(self.auto.local, "orm", 0):
                # an ORM statement no tracked session tagged: its entity's tables
                for table in _entity_tables(stmt):
                    self.auto.epoch(table, tags)
                if not tags:
                    tags.add(EPOCH_TAG)
            return tags, None
        found_table = getattr(stmt, "table", None)
        if not isinstance(found_table, sa.Table):
            tags.add(EPOCH_TAG)  # an alias, a join...: which rows of which table?
            return tags, None
        table = found_table
        plan = self.auto.plan(table)
        delete = isinstance(stmt, dml.Delete)
        keys = None
        if len(rows_params) > self.auto.max_rows:
            self.auto.epoch(table, tags)
            if delete:
                reachable_epochs(self.auto, [table], tags)
        else:
            cond = rows_condition(table, stmt.whereclause, rows_params or None)
            keys = self.auto.select(plan, cond, run, tags)
            if delete and has_cascades(table):
                cascade_tags(self.auto, table, cond, run, tags)
        after = None
        if isinstance(stmt, dml.Update) and keys:
            after = self._after_update((plan,), table, plan.pk, keys, stmt, rows_params, tags)
        return tags, after

    def _after_update(
        self,
        plans: tuple[TablePlan, ...],
        source: Any,
        pk: tuple[sa.Column[Any], ...],
        keys: list[tuple[Any, ...]],
        stmt: Any,
        params: Sequence[Mapping[str, Any]],
        tags: set[str],
    ) -> AfterUpdate | None:
        """What to read once an UPDATE ran: nothing if it sets none of the key and value
        columns (the new row tags are the old ones); ``~e`` if it sets a key column."""
        keys_set = set_keys(stmt)
        if keys_set is not None and not params:
            names = {c.key for p in plans for c in p.columns} | {c.key for c in pk}
            if not keys_set & names:
                return None
            if keys_set & {c.key for p in plans for c in p.pk}:
                for p in plans:
                    self.auto.epoch(p.table, tags)
                return None
        return AfterUpdate(plans, source, pk, keys)

    def after_update(self, after: AfterUpdate, run: Callable[[Any], Any]) -> set[str]:
        """The tags of an UPDATE's rows as they are now."""
        tags: set[str] = set()
        cols = list(dict.fromkeys(c for p in after.plans for c in (*p.columns, *after.pk)))
        pk: Any = after.pk[0] if len(after.pk) == 1 else sa.tuple_(*after.pk)
        flat: list[Any] = [k[0] for k in after.keys] if len(after.pk) == 1 else after.keys
        step = 500
        for i in range(0, len(flat), step):
            query = sa.select(*cols).select_from(after.source).where(pk.in_(flat[i : i + step]))
            for r in run(query):
                m = r._mapping
                for plan in after.plans:
                    if not self.auto.row(plan, {c: m[c] for c in plan.columns}, tags):
                        self.auto.epoch(plan.table, tags)
        return tags

    def inserted(self, stmt: Any, result: Any) -> set[str]:
        """An INSERT that ran: the rows it added (``after_execute``)."""
        tags: set[str] = set()
        context = getattr(result, "context", None)
        table = compiled_dml_table(context)
        if table is None:
            found = getattr(stmt, "table", None)
            table = plain_table(found) if isinstance(found, sa.Table) else None
        if table is None:
            tags.add(EPOCH_TAG)
            return tags
        plan = self.auto.plan(table)
        if is_upsert(stmt) or insert_from_select(stmt) is not None:
            self.auto.epoch(table, tags)  # rows (or overwritten rows) not known
            return tags
        rows: Sequence[Mapping[str, Any]] = multi_values_rows(stmt) or list(
            getattr(context, "compiled_parameters", None) or [{}]
        )
        try:
            returned = list(result.inserted_primary_key_rows)
        except Exception:  # RETURNING given explicitly: the user's rows
            returned = []
        values = []
        for i, params in enumerate(rows):
            row: dict[Any, Any] = {}
            for col in plan.columns:
                value = params.get(col.key, UNKNOWN)
                if value is UNKNOWN and col in plan.pk and i < len(returned):
                    key = returned[i]
                    index = plan.pk.index(col)
                    value = key[index] if key is not None and index < len(key) else UNKNOWN
                if value is UNKNOWN and col not in plan.pk and _null_default(col):
                    value = None
                if isinstance(value, sa.sql.ClauseElement):
                    value = UNKNOWN
                row[col] = value
            values.append(row)
        self.auto.rows(plan, values, tags)
        return tags

    # -- ORM (do_orm_execute) ------------------------------------------------------------------
    def orm(
        self,
        mapper: Any,
        stmt: Any,
        rows_params: Sequence[Mapping[str, Any]] | None,
        run: Callable[[Any], Any],
    ) -> tuple[set[str], AfterUpdate | None]:
        """An ORM UPDATE / DELETE of ``mapper``'s rows, before it runs: the old rows of
        every table of the mapper, read through its selectable."""
        tags: set[str] = set()
        auto = self.auto
        plans = tuple(auto.plan(t) for t in mapper.tables)
        pk = tuple(mapper.primary_key)
        where = stmt.whereclause
        if where is None and rows_params:  # by primary key: the parameter rows name them
            attrs = [mapper.get_property_by_column(c).key for c in pk]
            wanted = [
                tuple(p.get(a, p.get(c.key)) for a, c in zip(attrs, pk, strict=True))
                for p in rows_params
            ]
            if any(v is None for k in wanted for v in k) or len(wanted) > auto.max_rows:
                for p in plans:
                    auto.epoch(p.table, tags)
                return tags, None
            where = _in(pk, wanted)
        cols = list(dict.fromkeys(c for p in plans for c in (*p.columns, *pk)))
        source = mapper.persist_selectable
        query = sa.select(*cols).select_from(source)
        if where is not None:
            query = query.where(where)
        found = run(query.limit(auto.max_rows + 1)).all()
        keys: list[tuple[Any, ...]] | None = None
        if len(found) > auto.max_rows:
            for p in plans:
                auto.epoch(p.table, tags)
        else:
            keys = []
            for r in found:
                m = r._mapping
                for p in plans:
                    if not auto.row(p, {c: m[c] for c in p.columns}, tags):
                        auto.epoch(p.table, tags)
                keys.append(tuple(m[c] for c in pk))
        if isinstance(stmt, dml.Delete):
            for p in plans:
                if not has_cascades(p.table):
                    continue
                if keys is not None and len(p.pk) == len(pk):
                    cascade_tags(auto, p.table, _in(p.pk, keys), run, tags)
                else:
                    reachable_epochs(auto, [p.table], tags)
            return tags, None
        after = None
        if keys:
            after = self._after_update(plans, source, pk, keys, stmt, rows_params or (), tags)
        return tags, after


def _in(cols: tuple[sa.Column[Any], ...], keys: list[tuple[Any, ...]]) -> Any:
    if len(cols) == 1:
        return cols[0].in_([k[0] for k in keys])
    return sa.tuple_(*cols).in_(keys)


def _null_default(col: sa.Column[Any]) -> bool:
    """An INSERT that does not give ``col`` stores NULL (no default of any kind)."""
    return col.server_default is None and col.default is None and col.nullable is not False


def _entity_tables(stmt: Any) -> list[sa.Table]:
    """The tables of an ORM statement's entity (``entity_description``)."""
    try:
        entity = stmt.entity_description.get("entity")
        mapper: Any = sa.inspect(entity) if entity is not None else None
    except Exception:
        return []
    return list(getattr(mapper, "tables", ()))
