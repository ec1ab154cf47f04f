"""Model -> tags declarations: what a change to a tracked model invalidates.

A model opts in once, with ``cache.track``::

    @cache.track(entity="folder", parents={"data_room_id": "dataroom", "parent_id": "folder"})
    class Folder(db.Model): ...

From the declaration the library derives, for every insert, update and delete:

* ``{entity}:{id}`` (the entity itself),
* ``{entity}:list`` (unless ``list_tag=False``),
* one tag per parent attribute, for the OLD and the NEW value (a move invalidates both):
  parent type ``folder`` -> ``folder:{id}/contents``, ``dataroom`` -> ``dataroom:{id}``,
  ``user`` -> ``user:{id}``, anything else -> ``{type}:{id}``,
* ``user:{id}`` for every id returned by ``members(obj)`` (evaluated at flush, also on
  delete, before the row is gone),
* whatever the model's ``cache_tags(self, change)`` method returns.

``type:{entity}`` is not bumped by ordinary changes: only by bulk statements, and by
database cascades, whose rows cannot be known cheaply (see
:mod:`flask_dataroom_cache.tracking`).

A many-to-many association ``Table`` may be declared too (``cache.track(table, entity=...,
parents={column: type}, sides=True)``: :class:`AssociationRule`); declared or not, a change
of one of its rows counts as an update of both rows it links (see
:mod:`flask_dataroom_cache.tracking.links`).

A declaration that cannot work raises (reserved entity names, attribute names that are
not columns of the model: :mod:`flask_dataroom_cache.rule_checks`).

Unregistered models cost one dict lookup per flushed object and trigger nothing.
The same tag functions (:mod:`flask_dataroom_cache.tags`) build the tags that views put on
their entries, so both sides always agree on names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .keys import _text
from .rule_checks import MapperChecks, check_names
from .tags import contents_tag, dataroom_tag, entity_tag, list_tag, user_tag

__all__ = ["AssociationRule", "Change", "Registry", "Rule", "association_rule", "parent_tag"]


def parent_tag(parent_type: str, parent_id: Any) -> str:
    """The tag a change bumps on one parent: ``folder`` -> its contents, ``dataroom``,
    ``user``, else ``{type}:{id}``."""
    if parent_type == "folder":
        return contents_tag(parent_id)
    if parent_type == "dataroom":
        return dataroom_tag(parent_id)
    if parent_type == "user":
        return user_tag(parent_id)
    return entity_tag(parent_type, parent_id)


def _memo(cache: dict[Any, str], parent_type: str, value: Any) -> str:
    """``parent_tag`` memoised per rule and attribute: parents repeat across a flush."""
    if len(cache) > 4096:
        cache.clear()
    tag = cache[value] = parent_tag(parent_type, value)
    return tag


@dataclass(frozen=True)
class Change:
    """One tracked object's change, handed to ``cache_tags(self, change)``.

    ``kind`` is ``insert``, ``update`` or ``delete``; ``old`` maps each parent attribute
    to the value it had before this flush (equal to the current one if unchanged).
    """

    kind: str
    entity: str
    id: Any
    obj: Any
    old: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """The declaration of one tracked model."""

    model: type
    entity: str
    id_attr: str = "id"
    parents: Mapping[str, str] = field(default_factory=dict)
    list_tag: bool = True
    members: Callable[[Any], Iterable[Any]] | None = None
    has_hook: bool = False
    # Precomputed from the fields above for the flush hot path (set in __post_init__).
    #: ``{entity}:`` (the entity tag without the id).
    _entity_prefix: str = field(init=False, repr=False, compare=False)
    #: ``{entity}:list``, or None with ``list_tag=False``.
    _list: str | None = field(init=False, repr=False, compare=False)
    #: ``(attribute, parent type, memo of parent_tag by value)`` per parent.
    _parent_plan: tuple[tuple[str, str, dict[Any, str]], ...] = field(
        init=False, repr=False, compare=False
    )
    #: The parent attribute names.
    parent_attrs: frozenset[str] = field(init=False, repr=False, compare=False)
    #: Attributes whose pre-flush values (``committed_state``) the flush reads: parents, id.
    history_attrs: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: True if a change needs the object itself (``members`` or a ``cache_tags`` hook).
    needs_obj: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # object.__setattr__: the dataclass is frozen
        object.__setattr__(self, "_entity_prefix", entity_tag(self.entity, "x")[:-1])
        object.__setattr__(self, "_list", list_tag(self.entity) if self.list_tag else None)
        object.__setattr__(self, "_parent_plan", tuple((a, t, {}) for a, t in self.parents.items()))
        object.__setattr__(self, "parent_attrs", frozenset(self.parents))
        object.__setattr__(self, "history_attrs", (*self.parents, self.id_attr))
        object.__setattr__(self, "needs_obj", self.members is not None or self.has_hook)

    def collect(
        self,
        out: set[str],
        obj: Any,
        kind: str,
        current: Mapping[str, Any],
        old: Mapping[str, Any] | None = None,
        members: Iterable[Any] | None = None,
    ) -> None:
        """Add the tags of one change to ``out`` (the flush hot path)."""
        ident = current.get(self.id_attr)
        if ident is not None:
            text = str(ident) if type(ident) is int else _text(ident)
            out.add(self._entity_prefix + text)
        if old:
            old_id = old.get(self.id_attr)
            if old_id is not None and old_id != ident:  # the primary key itself changed
                out.add(entity_tag(self.entity, old_id))
        if self._list is not None:
            out.add(self._list)
        cache: dict[Any, str]
        for attr, ptype, cache in self._parent_plan:
            value = current.get(attr)
            if value is not None:
                tag = cache.get(value)
                if tag is None:
                    tag = _memo(cache, ptype, value)
                out.add(tag)
            if old:
                prev = old.get(attr)
                if prev is not None and prev != value:
                    tag = cache.get(prev)
                    if tag is None:
                        tag = _memo(cache, ptype, prev)
                    out.add(tag)
        if members is None and self.members is not None and obj is not None:
            members = self.member_ids(obj)
        if members:
            out.update(user_tag(uid) for uid in members if uid is not None)
        if self.has_hook and obj is not None:
            extra = obj.cache_tags(Change(kind, self.entity, ident, obj, dict(old or {})))
            if extra:
                if isinstance(extra, str):
                    raise TypeError(f"{self.model.__name__}.cache_tags must return a list")
                out.update(extra)

    def member_ids(self, obj: Any) -> list[Any]:
        """``members(obj)`` as a list; a string (iterated, one tag per character: a
        silent mistake) or a non-iterable raises, naming the model."""
        assert self.members is not None
        found = self.members(obj)
        if isinstance(found, str | bytes) or not isinstance(found, Iterable):
            raise TypeError(
                f"{self.model.__name__}: members(obj) must return an iterable of user ids, "
                f"not {type(found).__name__}"
            )
        return list(found)

    def tags(
        self,
        obj: Any,
        kind: str,
        old: Mapping[str, Any] | None = None,
        members: Iterable[Any] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> set[str]:
        """Tags for one change of ``obj``.

        ``values`` (default: the object's ``__dict__``) gives the current attribute
        values; ``old`` the values before the change (both are tagged); ``members`` the
        member ids already evaluated (else ``members(obj)`` is called now, if declared).
        """
        out: set[str] = set()
        self.collect(out, obj, kind, obj.__dict__ if values is None else values, old, members)
        return out


@dataclass(frozen=True)
class AssociationRule:
    """The declaration of one association table (or the default of a detected one)."""

    table: sa.Table
    #: None for a detected (undeclared) table: it has no tags of its own
    entity: str | None
    #: column key -> parent type: ``parent_tag(type, value)`` for each row's value
    parents: Mapping[str, str] = field(default_factory=dict)
    #: column keys whose foreign keys count as sides; None: every foreign key
    sides: frozenset[str] | None = None
    list_tag: bool = True


def association_rule(
    table: Any,
    *,
    entity: str | None = None,
    parents: Mapping[str, str] | None = None,
    sides: bool | Iterable[str] = True,
    list_tag: bool = True,
) -> AssociationRule:
    """Check and build the declaration ``cache.track(table, ...)``: every column named in
    ``parents`` or ``sides`` must be a column of the table (``ValueError`` names both)."""
    if not isinstance(table, sa.Table):
        raise TypeError(f"track() needs a model class or a Table, got {table!r}")
    name = entity if entity is not None else table.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"track({table.name}): invalid entity name {name!r}")
    parents = dict(parents or {})
    check_names(table, name, parents.values())  # reserved namespaces, as for models
    columns = set(table.c.keys())
    for col, ptype in parents.items():
        if not isinstance(ptype, str) or not ptype:
            raise ValueError(
                f"track({table.name}): parents must map column names to entity types, "
                f"got {col!r}: {ptype!r}"
            )
        if col not in columns:
            raise ValueError(
                f"track({table.name}): parents names {col!r}, which is not a column of "
                f"{table.name} (columns: {', '.join(sorted(columns))})"
            )
    chosen: frozenset[str] | None
    if sides is True:
        chosen = None
    elif sides is False or sides is None:
        chosen = frozenset()
    elif isinstance(sides, str):
        raise TypeError(f"track({table.name}): sides is True, False or a list of column names")
    else:
        chosen = frozenset(sides)
        for col in chosen:
            if col not in columns:
                raise ValueError(
                    f"track({table.name}): sides names {col!r}, which is not a column of "
                    f"{table.name} (columns: {', '.join(sorted(columns))})"
                )
    if not isinstance(list_tag, bool):
        raise TypeError(f"track({table.name}): list_tag must be True or False")
    return AssociationRule(table, name, parents, chosen, list_tag)


class Registry:
    """Tracked models of one :class:`~flask_dataroom_cache.DataRoomCache` (shared by its apps)."""

    def __init__(self) -> None:
        self._rules: dict[type, Rule | None] = {}
        #: class -> rule (or None) for classes already looked up: the flush hot path
        #: reads it directly and falls back to :meth:`rule_for` on a miss.
        self.resolved = self._rules
        self._declared: dict[type, Rule] = {}
        self.version = 0
        self.has_members = False
        #: attribute names checked against each model's mapper once it is configured
        self.checks = MapperChecks()
        #: association tables declared with ``track(table, ...)`` (:class:`AssociationRule`)
        self.tables: dict[Any, AssociationRule] = {}

    def track(self, target: Any = None, /, **options: Any) -> Any:
        """``cache.track``: :meth:`declare` ``target`` now, or, without one, return a class
        decorator that declares the class it decorates."""
        if target is None:
            return lambda cls: self.declare(cls, **options)
        return self.declare(target, **options)

    def declare(self, target: Any, **options: Any) -> Any:
        """``cache.track(target, **options)``: a model class, or an association ``Table``."""
        if isinstance(target, sa.Table):
            self.tables[target] = association_rule(target, **options)
            self.version += 1
        else:
            self.add(target, **options)
        return target

    def add(
        self,
        model: type,
        *,
        entity: str | None = None,
        id_attr: str = "id",
        parents: Mapping[str, str] | None = None,
        list_tag: bool = True,
        members: Callable[[Any], Iterable[Any]] | None = None,
    ) -> Rule:
        if not isinstance(model, type):
            raise TypeError(f"track() needs a model class or a Table, got {model!r}")
        name = entity or getattr(model, "__tablename__", None) or model.__name__.lower()
        if not isinstance(name, str) or not name:
            raise ValueError(f"invalid entity name {name!r}")
        parents = dict(parents or {})
        for attr, ptype in parents.items():
            if not isinstance(attr, str) or not isinstance(ptype, str) or not ptype:
                raise ValueError(f"parents must map attribute names to entity types: {parents!r}")
        if members is not None and not callable(members):
            raise TypeError("members must be a callable(obj) -> iterable of user ids")
        if not isinstance(id_attr, str) or not id_attr:
            raise ValueError(f"id_attr must be an attribute name, not {id_attr!r}")
        check_names(model, name, parents.values())
        rule = Rule(
            model=model,
            entity=name,
            id_attr=id_attr,
            parents=parents,
            list_tag=list_tag,
            members=members,
            has_hook=callable(getattr(model, "cache_tags", None)),
        )
        self.checks.watch(rule)  # raises now if the mapper is configured and a name is wrong
        self._declared[model] = rule
        self._rules.clear()  # subclasses resolve again
        self.has_members = any(r.members is not None for r in self._declared.values())
        self.version += 1
        return rule

    def rule_for(self, cls: type) -> Rule | None:
        """The rule of ``cls`` or of its nearest tracked base class; None if untracked."""
        try:
            return self._rules[cls]
        except KeyError:
            pass
        found = None
        for base in cls.__mro__:
            found = self._declared.get(base)
            if found is not None:
                break
        self._rules[cls] = found
        return found

    def rules(self) -> list[Rule]:
        return list(self._declared.values())

    def __bool__(self) -> bool:
        return bool(self._declared or self.tables)
