"""Textual SQL (``text()``, ``exec_driver_sql``): is it a write, and to which tracked tables.

Its rows are unknown. A write to a tracked table bumps ``type:{entity}`` and
``{entity}:list``; a write whose target is not plain (``TRUNCATE``, which may name several
tables, a data-modifying ``WITH``, several statements in one string) bumps every tracked
type. The engine listener (``connection.py``) also treats any write as a flushed change of
the owning session (reads bypass the cache, fills are dropped, ``invalidate_tags`` is
deferred), so nothing it wrote can reach the cache before the commit.

The patterns only look at the statement's head; every one is linear in its input (a run of
comments cannot make them backtrack).
"""

from __future__ import annotations

import re

from .rows import TableInfo, TrackedTables, coarse_tags

__all__ = ["MORE_STATEMENTS", "TEXT_TARGET", "WRITE_CTE", "WRITE_SQL", "is_write", "tags_for"]

#: A block comment that cannot run past its own ``*/`` (``/\*.*?\*/`` could, and a run of
#: comments then backtracks exponentially).
_COMMENT = r"/\*[^*]*\*+(?:[^/*][^*]*\*+)*/"
_LEAD = r"\s*(?:" + _COMMENT + r"\s*|--[^\n]*\n\s*)*"
#: ``EXPLAIN ANALYZE <statement>`` runs the statement (a plain EXPLAIN does not: harmless).
_EXPLAIN = r"(?:explain\s+(?:\([^)]*\)\s*|analy[sz]e\s+|verbose\s+)*)?"
#: A statement that writes rows.
WRITE_SQL = re.compile(
    _LEAD + _EXPLAIN + r"(insert|update|delete|merge|replace|upsert|truncate)\b", re.I | re.S
)
#: A ``WITH ...`` statement that writes (PostgreSQL's data-modifying CTEs): a CTE body
#: (``AS (``) or the main statement (after a ``)``) that is a write; ``SELECT ... FOR
#: UPDATE`` is not one.
WRITE_CTE = re.compile(
    _LEAD
    + r"with\b.*?(?:\bas\s*(?:not\s+)?(?:materialized\s*)?\(\s*|\)\s*)"
    + r"(insert|update|delete|merge)\b",
    re.I | re.S,
)
_NAME = r'(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[\w$]+)'
#: The target table of a textual INSERT/UPDATE/DELETE/REPLACE/MERGE (last name part).
TEXT_TARGET = re.compile(
    _LEAD
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


def is_write(sql: str) -> bool:
    """True if ``sql`` writes rows (or may: a data-modifying ``WITH``)."""
    return bool(WRITE_SQL.match(sql) or WRITE_CTE.match(sql))


def written_tables(sql: str, tables: TrackedTables, dialect_name: str) -> list[TableInfo]:
    """The tracked tables a textual write may change: its target, else all of them."""
    tables.refresh()
    target = TEXT_TARGET.match(sql)
    if target is None or WRITE_CTE.match(sql) or MORE_STATEMENTS.search(sql):
        # TRUNCATE (may name several tables), a WITH ... write, several statements:
        # the targets are unknown, every tracked type is bumped
        return [i for _, i in tables.items()]
    name = target.group(1)
    quoted = name[0] in '"`['
    # quoted names are case-sensitive on PostgreSQL only (SQLite, MySQL: not)
    exact = quoted and dialect_name == "postgresql"
    name = name[1:-1] if quoted else name
    if not exact:
        name = name.lower()
    return [i for t, i in tables.items() if (t.name if exact else t.name.lower()) == name]


def tags_for(sql: str, tables: TrackedTables, dialect_name: str) -> set[str]:
    """The tags a textual write bumps (``sql`` is a write: :func:`is_write`)."""
    tags: set[str] = set()
    for info in written_tables(sql, tables, dialect_name):
        coarse_tags(info.rule, tags)
    return tags
