"""Flushed objects -> tags: the rules applied to what one flush writes.

``before_flush`` keeps what ``after_flush`` cannot know (:meth:`FlushTags.remember`):

* the members of deleted objects (before their rows, and their memberships, are gone);
* parent values that are not loaded: an expired object moved through a relationship, or
  an expired child appended to / removed from a one-to-many collection. The flush would
  overwrite the old value without recording it; the database still has it: read it.

``after_flush`` (:meth:`FlushTags.collect`) turns every flushed object (from the flush
context: cascades and orphans included) into tags, from its current values and its
pre-flush values (``committed_state``, which the flush's foreign-key sync also fills).
History is pre-flush history, reset by every flush: it is read in each flush, never at
commit.

This is the flush hot path: per object one dict lookup of its class's rule (``Registry.
resolved``) and, for tracked classes, one ``Rule.collect``; plans are cached per class.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..rules import Registry, Rule
from .sqlexpr import modified_states

__all__ = ["FlushTags", "OldValues"]

#: Per object state: (parent values before this flush when not loaded, or None;
#: member ids of a deleted object, or None).
OldValues = dict[Any, tuple[dict[str, Any] | None, list[Any] | None]]

_NO_VALUE = object()
_NO_RULE: Any = object()
_ORM_NO_VALUE = sa.orm.base.NO_VALUE
_MISSING_VALUES = (sa.orm.base.NO_VALUE, sa.orm.base.PASSIVE_NO_RESULT, None)


class FlushTags:
    """The flush side of one tracker's rules (with its per-class caches)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._child_plans: dict[type, tuple[tuple[str, Rule], ...]] = {}
        self._child_version = -1

    def remember(self, session: Session, old_values: OldValues) -> None:
        """``before_flush``: members of deleted objects and parent values not loaded."""
        registry = self.registry
        rule_for = registry.rule_for
        if registry.has_members and session.deleted:
            with session.no_autoflush:
                for obj in session.deleted:
                    rule = rule_for(type(obj))
                    if rule is not None and rule.members is not None:
                        old_values[sa.inspect(obj)] = (None, rule.member_ids(obj))
        modified = modified_states(session)
        rules = registry.resolved
        if self._child_version != registry.version:
            self._child_plans.clear()
            self._child_version = registry.version
        plans = self._child_plans
        for state in list(modified):
            cls = state.class_
            children = plans.get(cls)
            if children is None:
                children = self._child_collections(cls)
            if children:
                self._children_old_values(session, state, children, old_values)
            rule = rules.get(cls, _NO_RULE)
            if rule is _NO_RULE:
                rule = rule_for(cls)
            if rule is None or not rule.parents or state.key is None:
                continue
            data = state.dict
            committed = state.committed_state
            # Not loaded (expired), or set on an expired object (expire_on_commit): the
            # ORM does not know the old value. The database still has it: read it.
            unknown = None
            for attr in rule.parents:
                if attr not in data or (committed and committed.get(attr) is _ORM_NO_VALUE):
                    if unknown is None:
                        unknown = [attr]
                    else:
                        unknown.append(attr)
            if unknown is None:
                continue  # loaded: after_flush reads the old values from committed_state
            old = _load_old(session, state, unknown)
            prev = old_values.get(state)
            old_values[state] = (old, prev[1] if prev else None)

    def _child_collections(self, cls: type) -> tuple[tuple[str, Rule], ...]:
        """One-to-many relationships of ``cls`` whose children are tracked with parents:
        appending a child to (or removing it from) such a collection moves the child
        without the child itself being modified first. Cached per class."""
        plan = self._child_plans.get(cls)
        if plan is None:
            found: list[tuple[str, Rule]] = []
            try:
                mapper: Any = sa.inspect(cls)
            except sa.exc.NoInspectionAvailable:
                mapper = None
            for rel in getattr(mapper, "relationships", ()):
                if rel.direction is not sa.orm.interfaces.ONETOMANY or rel.viewonly:
                    continue
                child_rule = self.registry.rule_for(rel.mapper.class_)
                if child_rule is not None and child_rule.parents:
                    found.append((rel.key, child_rule))
            plan = self._child_plans[cls] = tuple(found)
        return plan

    @staticmethod
    def _children_old_values(
        session: Session, state: Any, children: Any, old_values: OldValues
    ) -> None:
        """Old parent values of children added to / removed from a collection of
        ``state`` whose foreign keys are not loaded (expired): the flush's sync would
        overwrite them without recording the old value."""
        passive = sa.orm.base.PASSIVE_NO_INITIALIZE
        for key, child_rule in children:
            history = state.get_history(key, passive)
            for child in (*history.added, *history.deleted):
                cstate = sa.inspect(child)
                if cstate.key is None or cstate in old_values:
                    continue
                data, committed = cstate.dict, cstate.committed_state
                unknown = [
                    a
                    for a in child_rule.parents
                    if a not in data or (committed and committed.get(a) is _ORM_NO_VALUE)
                ]
                if unknown:
                    old_values[cstate] = (_load_old(session, cstate, unknown), None)

    def collect(self, session: Session, flush_context: Any, old_values: OldValues) -> set[str]:
        """``after_flush``: the tags of every object the flush wrote; ``old_values`` is
        used up (cleared)."""
        rule_for = self.registry.rule_for
        tags: set[str] = set()
        states = getattr(flush_context, "states", None)
        if states is None:  # pragma: no cover - SQLAlchemy without UOWTransaction.states
            states = {sa.inspect(o): (False, False) for o in (*session.new, *session.dirty)}
            states.update({sa.inspect(o): (True, False) for o in session.deleted})
        no_value = _MISSING_VALUES
        rules = self.registry.resolved
        for state, (isdelete, listonly) in states.items():
            if listonly and not isdelete:
                continue
            cls = state.class_
            rule = rules.get(cls, _NO_RULE)
            if rule is _NO_RULE:
                rule = rule_for(cls)
            if rule is None:
                continue
            obj = None
            if rule.needs_obj:
                obj = state.obj()
                if obj is None:
                    continue
            if isdelete:
                kind = "delete"
            elif state.key is None:
                kind = "insert"
            else:
                kind = "update"
            old: dict[str, Any] | None = None
            members = None
            if old_values:
                found = old_values.get(state)
                if found is not None:
                    old, members = found
            if kind == "update":
                committed = state.committed_state
                if committed:
                    for attr in rule.history_attrs:
                        prev = committed.get(attr, _NO_VALUE)
                        if prev is not _NO_VALUE and prev not in no_value:
                            if old is None:
                                old = {}
                            old[attr] = prev
            rule.collect(tags, obj, kind, state.dict, old, members)
        old_values.clear()
        return tags


def _load_old(session: Session, state: Any, attrs: list[str]) -> dict[str, Any]:
    """The database's values of ``attrs`` for the row of ``state`` (one SELECT by id)."""
    mapper = state.mapper
    cols = []
    for attr in attrs:
        prop = mapper.attrs.get(attr)
        columns = getattr(prop, "columns", None)
        if columns:
            cols.append((attr, columns[0]))
    if not cols or state.identity is None:
        return {}
    where = [c == v for c, v in zip(mapper.primary_key, state.identity, strict=True)]
    query = sa.select(*[c for _, c in cols]).where(*where)
    with session.no_autoflush:  # on the mapper's bind (its bind key), not the default one
        row = session.execute(query, bind_arguments={"mapper": mapper}).first()
    if row is None:
        return {}
    return {attr: value for (attr, _), value in zip(cols, row, strict=True)}
