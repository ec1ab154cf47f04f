"""What one executed statement read: a statement -> automatic dependency tags (issue 17).

:func:`statement_reads` looks at the SQLAlchemy statement object a cursor is about to run
(the compiled statement, for an ORM query the Core statement it compiled to) and the
values bound to it (``context.compiled_parameters``), never at the SQL text when a
statement object exists. For every table occurrence it decides how precisely the
statement reads it (``autotags.py`` names the tags):

* a top-level ``AND`` conjunct of the ``WHERE`` pins the table's primary key to bound
  values (``id = :x``, ``id IN (...)``: ``session.get``, lazy loads, ``selectinload``)
  -> one ``~r:`` tag per key value;
* else a conjunct pins a value column (``ValueColumns``: foreign keys and declared
  columns; ``= :x``, ``IN``, ``IS NULL``) -> one ``~c:`` tag per value (the column with
  the fewest values wins);
* else (ranges, ``LIKE``, ``OR``, a table reached only through a join, an aggregate
  without a pinned key, anything in a subquery, a CTE, ``EXISTS``) -> ``~t:{table}``.

Every table read also carries ``~e:{table}`` (the epoch of writes whose rows are
unknown). Why a pinned conjunct is enough, for any table of the ``FROM`` (joined, outer
joined, aggregated, limited): only rows satisfying every conjunct can reach the result,
so a write to any other row cannot change it, and the write side bumps the tags of both
the old and the new values of every row it changes (docs/auto-tags.md).

Textual SQL (``text()``, ``exec_driver_sql``) is read by :mod:`.textreads`: the tables it
names after ``FROM`` / ``JOIN`` (and a write's target) get table tags; SQL whose tables
cannot be known (a stored procedure, a function call not known to be pure, several
statements) makes the whole computation **unstorable** (:class:`Reads.unknown` holds
why). So does a function in a Core statement that is not known to be pure
(``func.my_procedure()``): it may read any table.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    ColumnClause,
    Null,
    TextClause,
)
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import Alias, FromClause, Select, TableClause, TextualSelect

from ..autotags import ValueColumns, column_tag, row_tag
from ..readcapture import Reads
from . import textreads

__all__ = ["MAX_VALUES_PER_PIN", "statement_reads"]

#: More values than this pinned on one column reads like the whole table (a huge
#: ``IN``: one table tag instead of thousands of row tags).
MAX_VALUES_PER_PIN = 64

_EQ = (operators.eq, operators.is_)
_IN = (operators.in_op,)
#: Statements that read nothing (transaction control the engine emits).
_NO_READS = ("SavepointClause", "RollbackToSavepointClause", "ReleaseSavepointClause")


def _table_name(table: TableClause) -> str:
    full = getattr(table, "fullname", None)
    return str(full if full else table.name)


def _base_table(from_: Any) -> TableClause | None:
    """The table a FROM element stands for: itself, or the table an alias aliases."""
    seen = 0
    while isinstance(from_, Alias) and seen < 8:
        from_ = from_.element
        seen += 1
    return from_ if isinstance(from_, TableClause) else None


class _Values:
    """The values bound to a compiled statement's parameters, for this execution."""

    def __init__(self, compiled: Any, params: Mapping[str, Any] | None) -> None:
        self.names: Mapping[Any, str] = getattr(compiled, "bind_names", None) or {}
        self.params = params or {}

    def of(self, bind: BindParameter[Any]) -> list[Any] | None:
        """The values a bound parameter holds (an expanding ``IN``: all of them); None
        when they cannot be known for sure."""
        name = self.names.get(bind)
        if name is None:
            return None
        if not bind.expanding:
            if name in self.params:
                return [self.params[name]]
            return None
        if name in self.params:  # not expanded yet
            value = self.params[name]
            return list(value) if isinstance(value, list | tuple) else None
        # expanded: name_1, name_2, ... (a tuple IN would be name_1_1: not pinned)
        out = []
        for i in itertools.count(1):
            key = f"{name}_{i}"
            if key not in self.params:
                break
            out.append(self.params[key])
        if out and f"{name}_1_1" in self.params:
            return None
        return out


#: One comparison pinning a column: ``(column name, operator, right side)``.
_Source = tuple[str, Any, Any]


def _pin_sources(where: Any) -> dict[Any, list[_Source]]:
    """``{FROM element: [(column name, operator, right side), ...]}`` of the top-level
    AND conjuncts of ``where`` that compare one column with a bound parameter (``=``,
    ``IN``) or ``NULL`` (``IS NULL``): the statement's structure, the same for every
    execution of one compiled statement."""
    out: dict[Any, list[_Source]] = {}
    if where is None:
        return out
    todo = [where]
    while todo:
        clause = todo.pop()
        if isinstance(clause, BooleanClauseList) and clause.operator is operators.and_:
            todo.extend(clause.clauses)
            continue
        if not isinstance(clause, BinaryExpression):
            continue
        op = clause.operator
        if op not in _EQ and op not in _IN:
            continue
        left, right = clause.left, clause.right
        if not isinstance(left, ColumnClause) or left.table is None:
            left, right = right, left
        if not isinstance(left, ColumnClause) or left.table is None or left.is_literal:
            continue
        if isinstance(right, Null) and op is operators.is_:
            out.setdefault(left.table, []).append((left.name, op, None))
        elif isinstance(right, BindParameter) and op is not operators.is_:
            out.setdefault(left.table, []).append((left.name, op, right))
    return out


def _pins(sources: list[_Source], values: _Values) -> dict[str, list[Any]]:
    """``{column name: values}`` pinned by ``sources`` in this execution (a column
    pinned twice: the intersection; values that cannot be known: not pinned)."""
    per: dict[str, list[Any]] = {}
    for name, op, right in sources:
        found: list[Any] | None
        if right is None:
            found = [None]
        else:
            found = values.of(right)
            if found is not None and op in _IN and not right.expanding:
                found = list(found[0]) if isinstance(found[0], list | tuple) else None
        if found is None or len(found) > MAX_VALUES_PER_PIN:
            continue
        if name in per:  # pinned twice: both hold, the intersection is exact
            per[name] = [v for v in per[name] if v in found]
        else:
            per[name] = list(found)
    return per


def _pinned_tags(
    table: sa.Table, pins: Mapping[str, list[Any]], value_columns: ValueColumns
) -> tuple[set[str], set[str]] | None:
    """``(row tags, column tags)`` for one occurrence of ``table`` given its pinned
    columns, or None when nothing usable is pinned (a table tag)."""
    name = _table_name(table)
    pk = [c.name for c in table.primary_key.columns]
    if pk and all(c in pins for c in pk):
        combos = list(itertools.product(*(pins[c] for c in pk)))
        if len(combos) <= MAX_VALUES_PER_PIN:
            return {row_tag(name, combo) for combo in combos}, set()
    usable = [c for c in pins if c in value_columns.of(table)]
    if not usable:
        return None
    best = min(usable, key=lambda c: (len(pins[c]), c))
    return set(), {column_tag(name, best, v) for v in pins[best]}


def _flat_froms(froms: Iterable[Any]) -> list[Any]:
    """The table occurrences of a FROM list, through joins."""
    out: list[Any] = []
    todo = list(froms)
    while todo:
        item = todo.pop()
        if isinstance(item, sa.sql.selectable.Join):
            todo.extend((item.left, item.right))
        else:
            out.append(item)
    return out


@dataclass(slots=True)
class _Plan:
    """What one compiled statement reads, whatever its bound values: the tables read
    wholly (and why the tables cannot be known, if so), and the top-level table
    occurrences whose pinned columns decide, per execution, how they are read."""

    base: Reads
    candidates: list[tuple[sa.Table, list[_Source]]]


#: Plans by compiled statement (SQLAlchemy reuses compiled statements from its cache:
#: a statement shape is analysed once), and by SQL text for ``exec_driver_sql``.
_PLANS: weakref.WeakKeyDictionary[Any, _Plan] = weakref.WeakKeyDictionary()
_TEXT_PLANS: dict[tuple[str, str], _Plan] = {}
_TEXT_PLANS_MAX = 1024


def _plan(compiled: Any, dialect_name: str) -> _Plan:
    base = Reads()
    statement = compiled.statement
    if type(statement).__name__ in _NO_READS:
        return _Plan(base, [])
    state = getattr(compiled, "compile_state", None)
    core = getattr(state, "statement", None)
    if core is None:
        core = statement
    if isinstance(core, TextualSelect):
        core = core.element
    if isinstance(core, TextClause):
        textreads.text_reads(core.text, base, dialect_name)
        return _Plan(base, [])
    candidates: list[tuple[sa.Table, list[_Source]]] = []
    skipped: set[int] = set()
    # the FROM list the compiler computed (``get_final_froms()`` would compile again)
    froms = list(getattr(state, "froms", None) or ()) if isinstance(core, Select) else []
    if froms and isinstance(core, Select):
        sources = _pin_sources(core.whereclause)
        for occurrence in _flat_froms(froms):
            table = _base_table(occurrence)
            if isinstance(table, sa.Table) and occurrence in sources:
                candidates.append((table, sources[occurrence]))
                skipped.add(id(occurrence))
    _Walk(base, skipped, dialect_name).top(core, froms)
    return _Plan(base, candidates)


def statement_reads(
    compiled: Any,
    params: Mapping[str, Any] | None,
    sql: str,
    value_columns: ValueColumns,
    dialect_name: str,
) -> Reads:
    """The dependencies of one statement about to run (``compiled``: its compiled form,
    None for ``exec_driver_sql``; ``params``: its first parameter set; ``sql``: the text
    sent, read only when there is no statement object)."""
    if compiled is None:
        plan = _TEXT_PLANS.get((sql, dialect_name))
        if plan is None:
            plan = _Plan(Reads(), [])
            textreads.text_reads(sql, plan.base, dialect_name)
            if len(_TEXT_PLANS) >= _TEXT_PLANS_MAX:
                _TEXT_PLANS.clear()
            _TEXT_PLANS[(sql, dialect_name)] = plan
    else:
        plan = _PLANS.get(compiled)
        if plan is None:
            plan = _PLANS[compiled] = _plan(compiled, dialect_name)
    reads = Reads()
    reads.merge(plan.base)
    if plan.candidates:
        values = _Values(compiled, params)
        for table, sources in plan.candidates:
            found = _pinned_tags(table, _pins(sources, values), value_columns)
            name = _table_name(table)
            if found is None:
                reads.whole(name)
            else:
                mine = reads.table(name)
                mine.rows |= found[0]
                mine.columns |= found[1]
    return reads


class _Walk:
    """Every table the statement reads anywhere (subqueries, CTEs, joins, ``EXISTS``): a
    table tag, except the occurrences in the top-level ``FROM`` that ``precise`` says
    how they are read (the same table object in a subquery is read wholly); textual parts
    and functions not known to be pure are read by :mod:`.textreads`."""

    __slots__ = ("dialect_name", "reads", "skipped")

    def __init__(self, reads: Reads, skipped: set[int], dialect_name: str):
        self.reads = reads
        #: Ids of the top-level occurrences decided per execution (``_Plan.candidates``).
        self.skipped = skipped
        self.dialect_name = dialect_name

    def top(self, statement: Any, froms: list[Any]) -> None:
        if not isinstance(statement, Select):
            self.visit(statement)
            return
        for from_ in froms:
            self.from_position(from_)
        for child in statement.get_children():
            # the statement's own FROM elements are all in ``froms`` (the FROM list the
            # compiler rendered), possibly as other (annotated) objects
            if not isinstance(child, FromClause) or isinstance(child, FunctionElement):
                self.visit(child)

    def from_position(self, element: Any) -> None:
        if isinstance(element, sa.sql.selectable.Join):
            self.visit(element.onclause)
            self.from_position(element.left)
            self.from_position(element.right)
            return
        if id(element) not in self.skipped:
            self.visit(element)

    def visit(self, root: Any) -> None:
        """Every table under ``root``. Inside a nested SELECT, a column leads to its
        table too (its implicit FROM; a correlated outer table is then read wholly: more
        than needed, never less); outside, tables come from the FROM lists only."""
        if root is None:
            return
        todo: list[tuple[Any, bool]] = [(root, isinstance(root, Select))]
        seen: set[int] = set()
        reads = self.reads
        while todo:
            element, nested = todo.pop()
            if id(element) in seen:
                continue
            seen.add(id(element))
            if isinstance(element, TableClause):
                reads.whole(_table_name(element))
                continue
            if isinstance(element, Alias):
                table = _base_table(element)
                if table is not None:
                    reads.whole(_table_name(table))
                    continue
            elif isinstance(element, TextClause):
                textreads.fragment_reads(element.text, reads, self.dialect_name)
            elif isinstance(element, ColumnClause):
                if element.is_literal:
                    textreads.fragment_reads(element.name, reads, self.dialect_name)
                elif nested and element.table is not None:
                    todo.append((element.table, nested))
            elif isinstance(element, FunctionElement):
                textreads.function_reads(getattr(element, "name", ""), reads)
            elif isinstance(element, Select):
                nested = True
            todo.extend((child, nested) for child in element.get_children())
