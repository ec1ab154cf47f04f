"""What textual SQL reads: the tables it names, or "cannot be known" (issue 17).

Used by :mod:`.reads` for ``text()`` statements, ``exec_driver_sql`` and textual parts
of Core statements (``where(text(...))``, ``literal_column``). Deliberately simple and
fail-closed: the tables are the names following ``FROM`` and ``JOIN`` (comma lists
included) and a write's target; anything that may read tables it does not name makes
the computation unstorable (``Reads.unknown``):

* a statement that is not a plain query or write (``CALL``, ``EXEC``, ``DO``, ...);
* a call of a function not known to be pure (``my_procedure()``: it may read anything);
* several statements in one string.

A name is lower-cased unless quoted (PostgreSQL folds unquoted names; quoted names are
kept as written), ``schema.table`` is kept whole: it must match the table's
``fullname`` (a table declared without a schema but named with one in SQL is a
different name: name it as declared). Names that are not tables (a CTE, an alias list)
only add tags nobody bumps: harmless.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .textual import LEAD, MORE_STATEMENTS

if TYPE_CHECKING:
    from ..readcapture import Reads

__all__ = ["PURE_FUNCTIONS", "fragment_reads", "function_reads", "text_reads"]

#: Functions (and keywords written like calls) that read no table.
PURE_FUNCTIONS = frozenset(
    """
    abs avg bool_and bool_or cast ceil ceiling char_length character_length coalesce
    concat concat_ws count current_date current_time current_timestamp date
    date_trunc datetime dense_rank every exp extract first_value floor greatest
    group_concat ifnull instr json_agg json_array json_build_array json_build_object
    json_extract json_object jsonb_agg jsonb_build_object lag last_value lead least
    left length ln localtime localtimestamp log lower lpad ltrim max min mod now
    nth_value ntile nullif octet_length percent_rank position power random rank
    regexp_replace repeat replace right round row_number rpad rtrim sign sqrt
    strftime string_agg substr substring sum timezone to_char to_date to_number
    to_timestamp trim trunc typeof upper unnest array_agg array_length
    array_position cardinality julianday unixepoch iif char hex quote printf format
    total likelihood version current_schema current_database current_user
    session_user current_setting pg_backend_pid database sqlite_version and or not
    in exists any all some values over filter within group using on as from where
    select join having by case when then else end is null between like ilike
    interval array row distinct returning into set
    """.split()  # noqa: SIM905 (a word list reads best as one)
)

_STRING = re.compile(r"'(?:[^']|'')*'")
_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
_NAME = r'(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[A-Za-z_][\w$]*)'
_QUALIFIED = rf"{_NAME}(?:\s*\.\s*{_NAME})?"
#: ``FROM a [AS] x, b y`` / ``JOIN a``: the first name, then any comma-separated names.
_FROM = re.compile(
    rf"\b(?:from|join)\s+(?!\()({_QUALIFIED})((?:\s+(?:as\s+)?(?!(?:where|group|order|"
    rf"having|limit|offset|union|intersect|except|join|inner|left|right|full|cross|natural|"
    rf"on|using|for|window|fetch|returning|set|values)\b){_NAME})?(?:\s*,\s*{_QUALIFIED}"
    rf"(?:\s+(?:as\s+)?{_NAME})?)*)",
    re.I,
)
_LIST_ITEM = re.compile(rf"\s*,\s*({_QUALIFIED})", re.I)
_TARGET = re.compile(
    rf"\b(?:insert\s+(?:or\s+\w+\s+)?into|update(?:\s+or\s+\w+)?|merge\s+into|"
    rf"delete\s+from|replace\s+into)\s+(?:only\s+)?({_QUALIFIED})",
    re.I,
)
_CALL = re.compile(r"\b([A-Za-z_][\w$]*(?:\s*\.\s*[A-Za-z_][\w$]*)?)\s*\(")
_HEAD = re.compile(LEAD + r"(\w+)", re.S)
_READ_HEADS = frozenset(
    ("select", "with", "values", "table", "insert", "update", "delete", "merge", "replace")
)
_HARMLESS_HEADS = frozenset(
    ("begin", "commit", "rollback", "savepoint", "release", "set", "show", "reset", "end")
)


def _clean(sql: str) -> str:
    return _STRING.sub("''", _COMMENT.sub(" ", sql))


def _name(raw: str, dialect_name: str) -> str:
    parts = [p.strip() for p in re.split(r"\s*\.\s*(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", raw)]
    out = []
    for part in parts:
        if part[:1] in '"`[':
            inner = part[1:-1]
            out.append(inner if dialect_name == "postgresql" else inner.lower())
        else:
            out.append(part.lower())
    return ".".join(out)


def _tables(sql: str, reads: Reads, dialect_name: str) -> None:
    for match in _FROM.finditer(sql):
        reads.whole(_name(match.group(1), dialect_name))
        for item in _LIST_ITEM.finditer(match.group(2) or ""):
            reads.whole(_name(item.group(1), dialect_name))
    for match in _TARGET.finditer(sql):
        reads.whole(_name(match.group(1), dialect_name))


def _calls(sql: str, reads: Reads) -> None:
    for match in _CALL.finditer(sql):
        function_reads(match.group(1), reads)
        if reads.unknown is not None:
            return


def function_reads(name: str, reads: Reads) -> None:
    """A function called by a statement: unknown reads unless known to be pure."""
    base = name.rsplit(".", 1)[-1].strip().lower()
    if base not in PURE_FUNCTIONS and reads.unknown is None:
        reads.unknown = f"function {base}() may read any table"


def fragment_reads(sql: str, reads: Reads, dialect_name: str) -> None:
    """A textual part of a Core statement (a ``WHERE`` condition, a literal column)."""
    text = _clean(sql)
    if MORE_STATEMENTS.search(text):
        reads.unknown = reads.unknown or "several statements in one text"
        return
    _tables(text, reads, dialect_name)
    _calls(text, reads)


def text_reads(sql: str, reads: Reads, dialect_name: str) -> None:
    """A whole textual statement."""
    text = _clean(sql)
    head = _HEAD.match(text)
    word = head.group(1).lower() if head else ""
    if word in _HARMLESS_HEADS:
        return
    if word not in _READ_HEADS:
        reads.unknown = reads.unknown or f"textual {word.upper() or 'SQL'} statement"
        return
    fragment_reads(text, reads, dialect_name)
