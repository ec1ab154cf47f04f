"""Bulk ORM and Core DML -> tags: what an INSERT / UPDATE / DELETE statement touches.

A statement on a tracked table (``session.execute(update(Model)...)``, ``conn.execute(
insert(table), rows)``...) names its rows only through a WHERE clause, parameters or a
SELECT. :func:`dml_tags` works out, *before* the statement runs:

* ``type:{entity}`` and ``{entity}:list``, always (rows may be missed by the SELECT: a
  concurrent insert; over-invalidating is allowed);
* the matched rows' entity and parent tags (one ``SELECT`` of the WHERE, capped at
  :data:`~.rows.BULK_ROW_CAP` rows, above which ``SELECT DISTINCT`` reads the parents);
* the new values: parameters, literal SET / VALUES, multi-row VALUES, ``from_select``,
  SQL expressions evaluated on their own, and for an upsert the rows it may overwrite;
* the rows the database cascades to (:mod:`.cascades`), for a DELETE;
* on an association table, both rows each added, removed or changed link connects
  (:mod:`.links`);
* ``members`` / ``cache_tags`` of the matched rows, loaded as objects, if the rule has them.

An UPDATE whose new parents are SQL expressions is re-read by id once it ran
(:func:`update_needs_reselect`, :func:`reselect`). What cannot be evaluated at all bumps
the namespace epoch (rare; over-invalidating is allowed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql import dml, visitors
from sqlalchemy.sql.elements import BindParameter, TextClause

from ..rules import parent_tag
from ..tags import EPOCH_TAG, entity_tag
from . import links, rows
from .cascades import CascadeGraph
from .rows import ConnectionOf, Run, TableInfo, coarse_tags, distinct_parent_tags, row_tags
from .sqlexpr import (
    bind_columns,
    in_chunks,
    insert_from_select,
    is_upsert,
    literal_values,
    multi_values_rows,
    set_keys,
    values_clause,
)

if TYPE_CHECKING:
    from .associations import Association

__all__ = [
    "dml_tags",
    "parameter_rows",
    "reselect",
    "rows_condition",
    "statement_tags",
    "update_needs_reselect",
]

#: Parameter values that are not one column's value (an IN list, a JSON document...).
_NOT_SCALAR = (list, tuple, set, frozenset, dict)


def parameter_rows(*params: Any) -> list[Mapping[str, Any]]:
    """The parameter rows of a Core execution (``multiparams``, ``params``): non-empty
    mappings, in order."""
    found: list[Mapping[str, Any]] = []
    for p in params:
        if isinstance(p, Mapping):
            if p:
                found.append(p)
        elif isinstance(p, list | tuple):
            found.extend(x for x in p if isinstance(x, Mapping))
    return found


def dml_tags(
    info: TableInfo | None,
    assoc: Association | None,
    cascades: CascadeGraph,
    stmt: Any,
    rows_params: Sequence[Mapping[str, Any]] | None,
    run: Run,
    connection: ConnectionOf,
    *,
    cascade: bool,
) -> tuple[set[str], list[Any]]:
    """Everything a DML statement invalidates, read before it runs: the statement's own
    tags (``info``: its table is tracked; ``assoc``: it is an association table), the
    ``members`` / ``cache_tags`` of the matched rows, and (``cascade``) the rows the
    database cascades a DELETE to. Returns the tags and the ids of the matched rows (for
    :func:`reselect`)."""
    tags: set[str]
    ids: list[Any] = []
    delete = isinstance(stmt, dml.Delete)
    if info is not None:
        tags, ids = statement_tags(info, stmt, rows_params, run)
        if ids and info.rule.needs_obj:
            # members / cache_tags of the matched rows (a delete: before it runs)
            rows.object_tags(info, ids, "delete" if delete else "update", connection, tags)
    elif assoc is not None:  # its rows link tracked rows: both sides
        cond = None
        if not isinstance(stmt, dml.Insert):
            cond = rows_condition(stmt.table, stmt.whereclause, rows_params)
        reader = links.Reader.on(run, connection)
        tags = links.statement_tags(assoc, stmt, rows_params, cond, reader)
    else:
        tags = set()
    if cascade:
        cond = rows_condition(stmt.table, stmt.whereclause, rows_params)
        cascades.tags(stmt.table, cond, run, connection, tags)
    return tags, ids


def statement_tags(
    info: TableInfo, stmt: Any, rows_params: Sequence[Mapping[str, Any]] | None, run: Run
) -> tuple[set[str], list[Any]]:
    """Tags for a DML statement on a tracked table, and the matched ids (update)."""
    cap = rows.BULK_ROW_CAP
    rule = info.rule
    tags: set[str] = set()
    coarse_tags(rule, tags)
    ids: list[Any] = []
    if isinstance(stmt, dml.Insert):
        _insert_tags(info, stmt, rows_params, run, tags)
        return tags, ids
    cols = [c for c in (info.id_col, *info.parent_cols.values()) if c is not None]
    if not cols:
        return tags, ids
    where = stmt.whereclause
    all_params = rows_params  # the new values they carry are tagged below, in any case
    if where is None and rows_params and info.id_col is not None:
        # executemany by primary key (ORM bulk update by pk): the rows are the ids
        id_keys = (rule.id_attr, info.id_col.key)
        wanted = [next((p[k] for k in id_keys if k in p), None) for p in rows_params]
        if all(v is not None for v in wanted):
            where = info.id_col.in_(wanted)
            rows_params = None
    overflow = False
    if where is not None and rows_params and unbound(where):
        # executemany with bindparam() criteria: one SELECT per parameter row
        found: list[Any] = []
        if len(rows_params) > cap:
            overflow, where = True, None  # the parents of the whole table
        else:
            for params in rows_params:
                query = sa.select(*cols).where(where).params(**params)
                found.extend(run(query).all())
    else:
        query = sa.select(*cols)
        if where is not None:
            query = query.where(where)
        found = run(query.limit(cap + 1)).all()
    if overflow or len(found) > cap:
        distinct_parent_tags(info, where, run, tags)
    else:
        for row in found:
            row_tags(info, row._mapping, tags)
            if info.id_col is not None:
                ids.append(row._mapping[info.id_col])
    binds = bind_columns(stmt)
    new_values = not isinstance(stmt, dml.Delete)
    for params in (all_params or ()) if new_values else ():  # new values as parameters
        values = {binds.get(k, k): v for k, v in params.items() if not isinstance(v, _NOT_SCALAR)}
        row_tags(info, values, tags)
    if (overflow or len(found) > cap) and _unknown_new_parents(info, stmt, all_params):
        # more rows than are re-read by id, moved to parents computed in SQL: no tag
        # names the new parents' listings; everything is invalidated (rare, and
        # over-invalidating is allowed)
        tags.add(EPOCH_TAG)
    if isinstance(stmt, dml.Update):
        literal = literal_values(stmt)
        for attr, pcol in info.parent_cols.items():
            value = literal.get(attr, literal.get(pcol.key))
            if value is not None:
                tags.add(parent_tag(rule.parents[attr], value))
        if info.id_col is not None:  # the primary key itself set: the new id's tag
            new_id = literal.get(rule.id_attr, literal.get(info.id_col.key))
            if new_id is not None:
                tags.add(entity_tag(rule.entity, new_id))
    return tags, ids


def _computed_values(info: TableInfo, stmt: Any, run: Run) -> dict[str, Any] | None:
    """The id and parent values an INSERT gives as SQL expressions (a scalar
    subquery...), evaluated with one ``SELECT`` before it; None when one cannot be
    evaluated on its own (it refers to parameters of the execution)."""
    wanted = {c.key for c in (info.id_col, *info.parent_cols.values()) if c is not None}
    exprs: dict[str, Any] = {}
    for k, v in values_clause(stmt).items():
        key = k if isinstance(k, str) else getattr(k, "key", None)
        if key not in wanted or isinstance(v, str | int | float | type(None)):
            continue
        if isinstance(v, BindParameter):
            continue  # a literal or a parameter of the execution: handled as such
        if isinstance(v, TextClause | sa.sql.functions.FunctionElement) or getattr(
            v, "is_literal", False
        ):
            # raw SQL (DEFAULT...) may only be valid inside the INSERT; a function may
            # change state (nextval): evaluating it first would tag another value
            return None
        if isinstance(v, sa.sql.elements.ClauseElement):
            exprs[str(key)] = v
    if not exprs:
        return {}
    if any(unbound(e) for e in exprs.values()):
        return None
    try:
        row = run(sa.select(*[e.label(k) for k, e in exprs.items()])).first()
    except Exception:
        return None
    return dict(row._mapping) if row is not None else None


def _insert_tags(
    info: TableInfo,
    stmt: Any,
    rows_params: Sequence[Mapping[str, Any]] | None,
    run: Run,
    tags: set[str],
) -> None:
    """The rows an INSERT adds: parameter rows, ``values()`` (one row or several),
    ``from_select`` (read with the same SELECT, capped), and for an upsert
    (``ON CONFLICT DO UPDATE`` / ``ON DUPLICATE KEY``) the rows it may overwrite."""
    cap = rows.BULK_ROW_CAP
    values = literal_values(stmt)
    binds = bind_columns(stmt)
    added: list[Mapping[Any, Any]] = [
        {**values, **{binds.get(k, k): v for k, v in p.items()}} for p in rows_params or [{}]
    ]
    computed = _computed_values(info, stmt, run)
    if computed is None:
        tags.add(EPOCH_TAG)  # a parent given as SQL that cannot be evaluated alone
    elif computed:
        added = [{**row, **computed} for row in added]
    added.extend(multi_values_rows(stmt))
    for row in added:
        row_tags(info, row, tags)
    from_select = insert_from_select(stmt)
    if from_select is not None:
        select, names = from_select
        sub = select.subquery()
        by_name = dict(zip(names, sub.c, strict=False))
        pairs = ((info.rule.id_attr, info.id_col), *info.parent_cols.items())
        wanted = [(a, c) for a, c in pairs if c is not None and c.key in by_name]
        if wanted:
            query = sa.select(*[by_name[c.key].label(c.key) for _, c in wanted]).distinct()
            found = run(query.limit(cap + 1)).all()
            for r in found[:cap]:
                row_tags(info, r._mapping, tags)
            if len(found) > cap:  # type:{entity} stands for the ids
                for attr, column in info.parent_cols.items():
                    if column.key in by_name:
                        q = sa.select(by_name[column.key]).distinct()
                        ptype = info.rule.parents[attr]
                        tags.update(parent_tag(ptype, v) for (v,) in run(q) if v is not None)
    if is_upsert(stmt) and info.id_col is not None:
        # an upsert may move an existing row: its old parents too (looked up by id;
        # without ids in the rows, type:{entity} is what covers it)
        id_keys = (info.rule.id_attr, info.id_col.key, info.id_col)
        ids = [v for r in added for k in id_keys if (v := r.get(k)) is not None]
        cols = [info.id_col, *info.parent_cols.values()]
        for condition in in_chunks(info.id_col, ids):
            for r in run(sa.select(*cols).where(condition)):
                row_tags(info, r._mapping, tags)


def _unknown_new_parents(
    info: TableInfo, stmt: Any, params: Sequence[Mapping[str, Any]] | None
) -> bool:
    """An UPDATE setting a parent column to a value known only to the database (an
    SQL expression: not a literal, not a parameter of the execution)."""
    if not isinstance(stmt, dml.Update) or not info.parent_cols:
        return False
    keys = set_keys(stmt)
    if keys is None:  # ORM bulk UPDATE by primary key: the parameters say
        return not params
    literal = literal_values(stmt)
    bound = set(bind_columns(stmt).values())
    return any(
        (attr in keys or col.key in keys) and not ({attr, col.key} & (literal.keys() | bound))
        for attr, col in info.parent_cols.items()
    )


def update_needs_reselect(info: TableInfo, stmt: Any) -> bool:
    """An UPDATE that sets a parent column to a non-literal value: the new parents are
    known only once it ran (:func:`reselect`)."""
    if not isinstance(stmt, dml.Update):
        return False
    keys = set_keys(stmt)
    if keys is None:
        return bool(info.parent_cols)
    literal = literal_values(stmt)
    return any(
        (attr in keys or col.key in keys) and attr not in literal and col.key not in literal
        for attr, col in info.parent_cols.items()
    )


def reselect(info: TableInfo, ids: list[Any], run: Run) -> set[str]:
    """The parent tags of rows ``ids`` as they are now (after an UPDATE moved them)."""
    tags: set[str] = set()
    if info.id_col is None or not info.parent_cols or not ids:
        return tags
    cols = list(info.parent_cols.values())
    for condition in in_chunks(info.id_col, ids):
        for row in run(sa.select(*cols).where(condition)):
            row_tags(info, row._mapping, tags)
    return tags


def rows_condition(table: Any, where: Any, rows_params: Sequence[Mapping[str, Any]] | None) -> Any:
    """A condition on ``table`` matching (at least) the rows a DELETE removes: its WHERE,
    with each parameter row's values when the criteria are ``bindparam()``s (executemany;
    the unit of work's own ``DELETE ... WHERE id = :id`` becomes ``id IN (...)``)."""
    if where is None:
        return sa.true()
    if not rows_params or not unbound(where):
        return where
    keys = {
        el.key
        for el in visitors.iterate(where)
        if isinstance(el, BindParameter) and el.value is None and el.callable is None
    }
    pk = list(table.primary_key.columns)
    expanding = any(
        isinstance(el, BindParameter) and el.expanding for el in visitors.iterate(where)
    )
    if (
        not expanding
        and len(pk) == 1
        and keys == {pk[0].key}
        and all(pk[0].key in p for p in rows_params)
    ):
        return pk[0].in_([p[pk[0].key] for p in rows_params])

    def bound(params: Mapping[str, Any]) -> Any:
        def replace(el: Any) -> Any:
            if isinstance(el, BindParameter) and el.key in params and el.key in keys:
                # an anonymous bind with the value (an IN list stays an expanding one)
                return sa.bindparam(None, params[el.key], type_=el.type, expanding=el.expanding)
            return None

        found: Any = visitors.replacement_traverse(where, {}, replace)  # type: ignore[call-overload]
        return found

    return sa.or_(*(bound(p) for p in rows_params))


def unbound(where: Any) -> bool:
    """True if the criteria hold ``bindparam()``s whose values come with each execution."""
    return any(
        isinstance(el, BindParameter) and el.value is None and el.callable is None
        for el in visitors.iterate(where)
    )
