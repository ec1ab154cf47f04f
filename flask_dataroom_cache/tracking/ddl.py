"""Schema changes (DDL): which statements are one, and whether one committed by itself.

A schema change on a tracked engine (``metadata.drop_all()`` / ``create_all()``, ``DROP``,
``ALTER``, ``TRUNCATE``, ``CREATE INDEX``...) says nothing about rows: every cache entry may
depend on what it dropped, emptied or reshaped, and most entries carry no tag naming a
whole table. So the tracker answers one with the namespace epoch (every entry misses),
delivered like a Core statement's tags: after the transaction commits, dropped if it rolls
back. This module only recognises DDL (as SQLAlchemy elements or as text) and tells when
a DDL statement has already committed by itself (MySQL's implicit commit, pysqlite's
default mode running DDL outside any transaction), so that it is sent at once too.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.schema import ExecutableDDLElement

from .sqlexpr import schema_prefixes
from .textual import LEAD

__all__ = ["commits_itself", "is_ddl_element", "is_ddl_text"]

#: A statement that changes the schema or empties tables. ``COMMENT ON`` changes nothing
#: a read returns but is cheap to count (it is rare).
_DDL_SQL = re.compile(LEAD + r"(?:create|drop|alter|truncate|rename|comment\s+on)\b", re.I | re.S)
#: Objects private to one connection, gone with it: ``CREATE TEMP TABLE`` / ``VIEW``
#: (per-request scratch tables must not empty the cache).
_TEMPORARY = re.compile(
    LEAD + r"create\s+(?:(?:global|local)\s+)?(?:temp|temporary)\b", re.I | re.S
)
#: Dialects whose DDL commits the open transaction implicitly.
_IMPLICIT_COMMIT = frozenset({"mysql", "mariadb", "oracle"})


def is_ddl_element(element: Any) -> bool:
    """``CreateTable``, ``DropTable``, ``CreateIndex``, ``DDL("...")``..., not temporary."""
    if not isinstance(element, ExecutableDDLElement):
        return False
    return not any(p.strip().upper() in ("TEMP", "TEMPORARY") for p in schema_prefixes(element))


def is_ddl_text(sql: str) -> bool:
    """Textual SQL that is a schema change (``TRUNCATE`` included), not a temporary one."""
    return bool(_DDL_SQL.match(sql)) and not _TEMPORARY.match(sql)


def commits_itself(conn: Connection) -> bool:
    """After a DDL statement ran on ``conn``: True if it is committed already (MySQL,
    Oracle; pysqlite when no transaction was open: its default mode begins one only
    before INSERT/UPDATE/DELETE), False if the connection's transaction holds it."""
    dialect = conn.dialect.name
    if dialect in _IMPLICIT_COMMIT:
        return True
    try:
        dbapi_connection = conn.connection.dbapi_connection
    except Exception:  # closed or invalidated: nothing more to know
        return False
    in_transaction = getattr(dbapi_connection, "in_transaction", None)  # sqlite3
    return isinstance(in_transaction, bool) and not in_transaction
