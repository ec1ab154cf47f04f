"""Association tables (many-to-many): which tables they are, and what they link.

A row of an association table (``favorites(user_id, article_id)``, a self-referential
``follows(follower_id, followed_id)``) links two rows. Each of its foreign keys that
references a tracked model is a *side* (:class:`Side`); a change of the row, however it is
made, is an update of the row each side references (``links.py`` turns the rows into
tags).

:class:`AssociationIndex` finds them, per tracker: the tables declared with
``cache.track(table, ...)`` (:class:`~flask_dataroom_cache.rules.AssociationRule`) and the
ones nobody declared: an untracked table that is the ``secondary=`` of a relationship, or an
unmapped table with two or more foreign-key columns, whose foreign keys reference tracked
models. Each is resolved against the tracked tables (:class:`Association`); the index is
rebuilt when the registry changes (``track()``) or a metadata gains a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..rules import AssociationRule
from ..tags import list_tag, type_tag
from .rows import coarse_tags

if TYPE_CHECKING:
    from ..rules import Registry
    from .rows import TableInfo

__all__ = ["Association", "AssociationIndex", "Side"]


@dataclass(frozen=True)
class Side:
    """One foreign key of an association table referencing a tracked table."""

    columns: tuple[str, ...]  # association column keys (one foreign key constraint)
    info: TableInfo  # the referenced tracked table
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
        """The table's own tags (a declared table: ``type:{entity}``, ``{entity}:list``)."""
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
            coarse_tags(side.info.rule, tags)


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

    def get(self, table: Any, infos: Mapping[sa.Table, TableInfo | None]) -> Association | None:
        """The association ``table`` is, None for any other (``infos``: tracked tables)."""
        if self._sig != self._signature():
            self._build(infos)
        return self._map.get(table)

    def all(self, infos: Mapping[sa.Table, TableInfo | None]) -> dict[sa.Table, Association]:
        """Every association table, with what it links."""
        if self._sig != self._signature():
            self._build(infos)
        return self._map

    def _build(self, infos: Mapping[sa.Table, TableInfo | None]) -> None:
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
    table: sa.Table, rule: AssociationRule, tracked: Mapping[sa.Table, TableInfo]
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
