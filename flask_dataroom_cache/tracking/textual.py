"""Textual SQL (``text()``, ``exec_driver_sql``): is it a write, and to which tracked tables.

Its rows are unknown. A write to a tracked table bumps ``type:{entity}`` and
``{entity}:list``; a write to an association table, its own type tags and each side's; a
write whose target is not plain (a data-modifying ``WITH``, several statements in one
string) bumps every tracked type. ``TRUNCATE`` is a schema-level reset (``ddl.py``).
The engine listener (``connection.py``) also treats any write as a flushed change of the
owning session (reads bypass the cache, fills are dropped, ``invalidate_tags`` is
deferred), so nothing it wrote can reach the cache before the commit.

The patterns only look at the statement's head; every one is linear in its input (a run of
comments cannot make them backtrack).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import sqlalchemy as sa

from ..autotags import epoch_tag, table_tag
from ..tags import EPOCH_TAG
from .rows import TrackedTables, coarse_tags

__all__ = [
    "LEAD",
    "MORE_STATEMENTS",
    "TEXT_TARGET",
    "WRITE_CTE",
    "WRITE_SQL",
    "auto_tags_for",
    "is_call",
    "is_write",
    "tags_for",
]

#: A block comment that cannot run past its own ``*/`` (``/\*.*?\*/`` could, and a run of
#: comments then backtracks exponentially).
_COMMENT = r"/\*[^*]*\*+(?:[^/*][^*]*\*+)*/"
#: Blanks and comments before a statement's first word (``ddl.py`` uses it too).
LEAD = r"\s*(?:" + _COMMENT + r"\s*|--[^\n]*\n\s*)*"
#: ``EXPLAIN ANALYZE <statement>`` runs the statement (a plain EXPLAIN does not: harmless).
_EXPLAIN = r"(?:explain\s+(?:\([^)]*\)\s*|analy[sz]e\s+|verbose\s+)*)?"
#: A statement that writes rows.
WRITE_SQL = re.compile(
    LEAD + _EXPLAIN + r"(insert|update|delete|merge|replace|upsert)\b", re.I | re.S
)
#: A ``WITH ...`` statement that writes (PostgreSQL's data-modifying CTEs): a CTE body
#: (``AS (``) or the main statement (after a ``)``) that is a write; ``SELECT ... FOR
#: UPDATE`` is not one.
WRITE_CTE = re.compile(
    LEAD
    + r"with\b.*?(?:\bas\s*(?:not\s+)?(?:materialized\s*)?\(\s*|\)\s*)"
    + r"(insert|update|delete|merge)\b",
    re.I | re.S,
)
_NAME = r'(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[\w$]+)'
#: The target table of a textual INSERT/UPDATE/DELETE/REPLACE/MERGE (last name part).
TEXT_TARGET = re.compile(
    LEAD
    + _EXPLAIN
    + r"(?:(?:insert|replace|upsert)(?:\s+or\s+\w+)?\s+into|merge\s+into|update(?:\s+or\s+\w+)?"
    r"|delete\s+from)\s+(?:only\s+)?"
    rf"(?:{_NAME}\s*\.\s*)?({_NAME})",
    re.I | re.S,
)
#: More than one statement in one string: anything but blanks/comments after a ``;``.
MORE_STATEMENTS = re.compile(
    r";\s*(?:" + _COMMENT + r"\s*|--[^\n]*(?:\n|$)\s*)*(?!/\*|--)[^;\s]", re.S
)


#: The target of a textual write with its schema, if named: (schema, table).
_TARGET_FULL = re.compile(
    LEAD
    + _EXPLAIN
    + r"(?:(?:insert|replace|upsert)(?:\s+or\s+\w+)?\s+into|merge\s+into|update(?:\s+or\s+\w+)?"
    r"|delete\s+from)\s+(?:only\s+)?"
    rf"(?:({_NAME})\s*\.\s*)?({_NAME})",
    re.I | re.S,
)
#: A stored procedure or an anonymous block: what it writes is unknown.
CALL_SQL = re.compile(LEAD + r"(?:call|exec|execute|do)\b", re.I | re.S)


def is_call(sql: str) -> bool:
    """``CALL proc()``, ``EXEC``, ``DO $$...$$``: it may write any table."""
    return bool(CALL_SQL.match(sql))


def _names(part: str, dialect_name: str) -> set[str]:
    """The names a table named ``part`` in SQL may have in the metadata: as written and
    lowercased (unquoted names fold), or exactly (quoted on PostgreSQL)."""
    if part[0] in '"`[':
        inner = part[1:-1]
        return {inner} if dialect_name == "postgresql" else {inner, inner.lower()}
    return {part, part.lower()}


def auto_tags_for(sql: str, dialect_name: str) -> set[str]:
    """The automatic tags of a textual write (``is_write``) or call: ``~e`` and ``~t`` of
    the table it names plainly (its rows are unknown); the namespace epoch when the
    target is not plain (a ``WITH ...`` write, several statements, a procedure)."""
    target = _TARGET_FULL.match(sql)
    if target is None or WRITE_CTE.match(sql) or MORE_STATEMENTS.search(sql):
        return {EPOCH_TAG}
    schema, name = target.group(1), target.group(2)
    tags: set[str] = set()
    for table in _names(name, dialect_name):
        fulls = {table}
        if schema is not None:
            fulls = {f"{s}.{table}" for s in _names(schema, dialect_name)} | {table}
        for full in fulls:
            tags.add(epoch_tag(full))
            tags.add(table_tag(full))
    return tags


def is_write(sql: str) -> bool:
    """True if ``sql`` writes rows (or may: a data-modifying ``WITH``)."""
    return bool(WRITE_SQL.match(sql) or WRITE_CTE.match(sql))


def _target(sql: str, dialect_name: str) -> Callable[[sa.Table], bool] | None:
    """Which table the write names plainly (a test on tables); None when it does not
    (a ``WITH ...`` write, several statements: the targets are unknown)."""
    target = TEXT_TARGET.match(sql)
    if target is None or WRITE_CTE.match(sql) or MORE_STATEMENTS.search(sql):
        return None
    name = target.group(1)
    quoted = name[0] in '"`['
    # quoted names are case-sensitive on PostgreSQL only (SQLite, MySQL: not)
    exact = quoted and dialect_name == "postgresql"
    name = name[1:-1] if quoted else name
    if exact:
        return lambda t: t.name == name
    name = name.lower()
    return lambda t: t.name.lower() == name


def tags_for(sql: str, tables: TrackedTables, dialect_name: str) -> set[str]:
    """The tags a textual write bumps (``sql`` is a write: :func:`is_write`): the type tags
    of the tracked tables it may change (its target, else all of them), and of the
    association tables it may change with their sides."""
    tables.refresh()
    named = _target(sql, dialect_name)
    tags: set[str] = set()
    for table, info in tables.items():
        if named is None or named(table):
            coarse_tags(info.rule, tags)
    for table, assoc in tables.associations().items():
        if named is None or named(table):
            assoc.text_tags(tags)
    return tags
