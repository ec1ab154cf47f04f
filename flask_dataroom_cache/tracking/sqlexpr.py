"""Everything the tracker reads from SQLAlchemy (and Flask-SQLAlchemy) beyond their public API.

The tracker needs a few facts that no public attribute exposes: the SET / VALUES of a DML
statement, whether a statement is ORM-enabled, the mapper's compiled cache (it marks the
unit of work's own statements), the session's pending collections, whether a flush or an
AUTOCOMMIT connection is running. Each is read here, by one small named function, and
nowhere else in the package (``tests/tracking/test_layout.py`` checks it), so an upgrade of
SQLAlchemy that moves one of them breaks one function, not the tracker. Each returns a safe
answer when the attribute is gone.

Also here: the expression helpers shared by the statement and cascade code (the chunked
``IN`` and the literal values of a SET / VALUES clause).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

__all__ = [
    "IN_CHUNK",
    "app_engines",
    "base_engine",
    "bind_columns",
    "compiled_dml_table",
    "in_chunks",
    "insert_from_select",
    "is_autocommit",
    "is_flask_sqlalchemy_session",
    "is_orm_statement",
    "is_upsert",
    "literal_values",
    "mapper_compiled_cache",
    "modified_states",
    "multi_values_rows",
    "plain_table",
    "run_by_orm_session",
    "running_flush_of",
    "schema_prefixes",
    "set_items",
    "set_keys",
    "unflushed_groups",
    "values_clause",
]

#: Values per ``IN (...)`` list: bounds the statement size (and SQLite's parameter limit).
IN_CHUNK = 500


# -- DML statements -------------------------------------------------------------------------
def values_clause(stmt: Any) -> Mapping[Any, Any]:
    """``{column or key: value}`` of an INSERT's ``values()`` / an UPDATE's SET (unordered)."""
    return getattr(stmt, "_values", None) or {}


def set_items(stmt: Any) -> list[tuple[Any, Any]]:
    """The SET / VALUES entries, ``values()`` then ``ordered_values()``."""
    values = getattr(stmt, "_values", None) or {}
    ordered = getattr(stmt, "_ordered_values", None) or []
    return [*values.items(), *ordered]


def _key(k: Any) -> str | None:
    return k if isinstance(k, str) else getattr(k, "key", None)


def set_keys(stmt: Any) -> set[str] | None:
    """The column keys a statement's SET / VALUES names; None when unknown (no clause at
    all, as in an ORM bulk UPDATE by primary key, or an entry that is not a column)."""
    values = getattr(stmt, "_values", None)
    ordered = getattr(stmt, "_ordered_values", None)
    if values is None and ordered is None:
        return None
    items: list[Any] = []
    if values:
        items.extend(values.keys())
    if ordered:
        items.extend(k for k, _ in ordered)
    out = set()
    for k in items:
        key = _key(k)
        if key is None:
            return None
        out.add(key)
    return out


def bind_columns(stmt: Any) -> dict[str, str]:
    """``{bindparam key: column key}`` for SET / VALUES entries given as ``bindparam()``
    whose values come with each execution (executemany parameter rows use these keys)."""
    out: dict[str, str] = {}
    for k, v in set_items(stmt):
        key = _key(k)
        if (
            key is not None
            and isinstance(v, sa.sql.elements.BindParameter)
            and v.value is None
            and v.callable is None
        ):
            out[v.key] = key
    return out


def _literals(items: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
    """``{column key: value}`` of the entries that are plain literals (a bound value, a
    string or an integer); expressions and parameters of the execution are left out."""
    out: dict[str, Any] = {}
    for k, v in items:
        key = _key(k)
        if key is None:
            continue
        if isinstance(v, sa.sql.elements.BindParameter):
            if v.callable is None and v.value is not None:
                out[key] = v.value
        elif isinstance(v, str | int):
            out[key] = v
    return out


def literal_values(stmt: Any) -> dict[str, Any]:
    """``{column key: value}`` of the statement's SET / VALUES that are plain literals."""
    return _literals(set_items(stmt))


def multi_values_rows(stmt: Any) -> list[dict[str, Any]]:
    """The literal values of each row of a multi-row ``insert().values([...])``."""
    return [
        _literals(row.items())
        for group in getattr(stmt, "_multi_values", None) or ()
        for row in group
        if isinstance(row, Mapping)
    ]


def insert_from_select(stmt: Any) -> tuple[Any, list[str]] | None:
    """``(select, column names)`` of an ``insert().from_select(names, select)``."""
    select = getattr(stmt, "select", None)
    names = getattr(stmt, "_select_names", None)
    if select is None or not names:
        return None
    return select, list(names)


def compiled_dml_table(context: Any) -> Any:
    """The table a compiled DML statement writes (an ORM bulk INSERT's per-table statement
    names its entity's table, not the one it writes), None if unknown."""
    compiled = getattr(context, "compiled", None)
    state = getattr(compiled, "dml_compile_state", None)
    table = getattr(state, "dml_table", None)
    if not isinstance(table, sa.Table):
        return None
    return plain_table(table)


def plain_table(table: sa.Table) -> sa.Table:
    """The metadata's own ``Table`` for ``table`` (an ORM statement's may be an annotated
    copy: same name, another object)."""
    metadata = getattr(table, "metadata", None)
    found = metadata.tables.get(table.key) if metadata is not None else None
    return found if found is not None else table


def is_upsert(stmt: Any) -> bool:
    """An INSERT with a clause after VALUES (``ON CONFLICT`` / ``ON DUPLICATE KEY``)."""
    return getattr(stmt, "_post_values_clause", None) is not None


def is_orm_statement(stmt: Any) -> bool:
    """An ORM-enabled statement (``update(Model)``, or a Core one whose WHERE names an ORM
    attribute: ``update(table).where(Model.id == 1)``)."""
    attrs = getattr(stmt, "_propagate_attrs", None) or {}
    return bool(attrs.get("compile_state_plugin") == "orm")


def run_by_orm_session(stmt: Any, execution_options: Any) -> bool:
    """An ORM-enabled statement that a ``Session`` is running (``session.execute``): its
    ``do_orm_execute`` saw it, and the Session passes its ``_sa_orm_*_options`` down to the
    connection. The same statement given to ``Connection.execute`` carries none: only the
    engine listener sees it."""
    if not is_orm_statement(stmt):
        return False
    return any(str(k).startswith("_sa_orm_") for k in execution_options or ())


def schema_prefixes(element: Any) -> list[str]:
    """The prefixes of the table (or other schema item) a DDL element creates or drops:
    ``["TEMPORARY"]`` for ``Table(..., prefixes=["TEMPORARY"])``."""
    target = getattr(element, "element", None)
    return [str(p) for p in getattr(target, "_prefixes", None) or ()]


# -- mappers and sessions ---------------------------------------------------------------------
def mapper_compiled_cache(mapper: Any) -> Any:
    """The compiled cache the unit of work runs a mapper's statements with (None if gone)."""
    return getattr(mapper.base_mapper, "_compiled_cache", None)


def modified_states(session: Session) -> Iterable[Any]:
    """The states of the session's modified objects (cheaper than ``session.dirty``)."""
    modified = getattr(session.identity_map, "_modified", None)
    if modified is None:  # pragma: no cover - private attribute gone
        return [sa.inspect(o) for o in session.dirty]
    return modified  # type: ignore[no-any-return]


def unflushed_groups(session: Session) -> tuple[Iterable[Any], ...] | None:
    """The states of new, deleted and modified objects not flushed yet, as three
    collections; None in the usual case (all empty), without building anything."""
    new = getattr(session, "_new", None)
    deleted = getattr(session, "_deleted", None)
    modified = getattr(session.identity_map, "_modified", None)
    if not new and not deleted and not modified:
        return None
    return (new or (), deleted or (), modified or ())


def running_flush_of(session: Session, flush_context: Any) -> bool:
    """True while ``session`` runs the unit of work of ``flush_context`` (not
    ``bulk_save_*``, which also sets the flushing flag but has no flush context)."""
    if flush_context is None or not getattr(session, "_flushing", False):
        return False
    tx = getattr(flush_context, "transaction", None)
    return tx is not None and tx is getattr(session, "_transaction", tx)


def is_flask_sqlalchemy_session(session: Session) -> bool:
    """A session of Flask-SQLAlchemy (it carries its ``SQLAlchemy`` object: possibly
    shared by several apps)."""
    return getattr(session, "_db", None) is not None


def app_engines(db: Any, app: Any) -> list[Engine]:
    """The engines Flask-SQLAlchemy made for ``app``, without pushing an app context."""
    return list(getattr(db, "_app_engines", {}).get(app, {}).values())


# -- engines and connections ---------------------------------------------------------------------
def base_engine(engine: Engine) -> Engine:
    """The engine an ``OptionEngine`` (``execution_options()``) was made from."""
    return getattr(engine, "_proxied", engine)  # type: ignore[no-any-return]


def is_autocommit(conn: Connection) -> bool:
    """True if ``conn`` runs in AUTOCOMMIT isolation (each statement commits itself)."""
    check = getattr(conn, "_is_autocommit_isolation", None)
    try:
        return bool(check()) if check is not None else False
    except Exception:  # pragma: no cover - private API changed
        return False


# -- expressions -----------------------------------------------------------------------------
def in_chunks(column: Any, values: list[Any]) -> list[Any]:
    """``column IN (...)`` conditions covering ``values``, :data:`IN_CHUNK` at a time."""
    return [column.in_(values[i : i + IN_CHUNK]) for i in range(0, len(values), IN_CHUNK)]
