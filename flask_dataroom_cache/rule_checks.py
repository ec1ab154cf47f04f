"""What a ``cache.track`` declaration may name, checked so a mistake raises instead of
silently under-invalidating.

* Entity names and parent types: a name whose tags would merge with a namespace the
  library reserves (:data:`flask_dataroom_cache.tags.RESERVED_NAMESPACES`: ``user``,
  ``type``, the epoch) is refused at declaration.
* Attribute names (``id_attr``, the keys of ``parents``): each must be a column attribute
  of the model. Checked against the model's mapper as soon as SQLAlchemy has configured
  it: at once if it already is, else from the mapper's ``mapper_configured`` event (the
  error then comes out of ``configure_mappers()``, at the app's first query or flush).
  A class that is not mapped (a plain base class whose mapped subclasses inherit the
  rule) is not checked.

This module owns those checks and the pending ``mapper_configured`` listeners
(:class:`MapperChecks`, one per :class:`~flask_dataroom_cache.rules.Registry`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .tags import RESERVED_NAMESPACES

if TYPE_CHECKING:
    from .rules import Rule

__all__ = ["DeclarationError", "MapperChecks", "check_names"]


class DeclarationError(ValueError):
    """A ``cache.track`` declaration names something that cannot work."""


def check_names(model: Any, entity: str, parent_types: Iterable[str]) -> None:
    """Refuse an entity name or parent type whose tags would merge with a reserved
    namespace (``user:{id}``, ``type:{entity}``, the epoch). ``model`` is a model class or
    an association ``Table``."""
    where = getattr(model, "__name__", None) or getattr(model, "name", None) or repr(model)
    if entity in RESERVED_NAMESPACES:
        why = RESERVED_NAMESPACES[entity]
        raise DeclarationError(
            f"{where}: entity name {entity!r} is reserved ({why}); its tags would merge with "
            f"it. Pass another name, e.g. entity='account' (the default is the table name); "
            f"to invalidate a user's per-user entries when this row changes, also declare "
            f"parents={{'id': 'user'}}"
        )
    for ptype in parent_types:
        if ptype != "user" and ptype in RESERVED_NAMESPACES:  # user -> user:{id}: its use
            raise DeclarationError(
                f"{where}: parent type {ptype!r} is reserved "
                f"({RESERVED_NAMESPACES[ptype]}): its tags would forge another's"
            )


def check_attributes(rule: Rule, mapper: Any) -> None:
    """Every attribute ``rule`` reads must be a column attribute of ``mapper``."""
    columns = set(mapper.column_attrs.keys())
    named = [("id_attr", rule.id_attr)]
    named.extend((f"parents key {attr!r}", attr) for attr in rule.parents)
    for what, attr in named:
        if attr in columns:
            continue
        prop = mapper.attrs.get(attr)
        kind = "" if prop is None else f" (it is a {type(prop).__name__}, not a column)"
        raise DeclarationError(
            f"cache.track({mapper.class_.__name__}): {what} names {attr!r}, which is not a "
            f"column attribute of {mapper.class_.__name__}{kind}; its columns: "
            f"{', '.join(sorted(columns))}"
            + (" (id_attr= names the column holding the id)" if what == "id_attr" else "")
        )


@dataclass
class MapperChecks:
    """The ``mapper_configured`` listeners still waiting for their mapper (one per
    tracked class: a new declaration of the class replaces its listener)."""

    pending: dict[type, tuple[Any, Callable[..., None]]] = field(default_factory=dict)

    def watch(self, rule: Rule) -> None:
        """Check ``rule`` against its model's mapper now, or once it is configured."""
        self.forget(rule.model)
        mapper: Any = sa.inspect(rule.model, raiseerr=False)
        if mapper is None or not isinstance(mapper, sa.orm.Mapper):
            return  # not mapped: nothing to check against
        if mapper.configured:
            check_attributes(rule, mapper)
            return

        def on_configured(configured: Any, _cls: type) -> None:
            # stays listed (removing a listener while it is dispatched is not allowed):
            # a mapper is configured once, so it never runs again; forget() detaches it
            check_attributes(rule, configured)

        sa.event.listen(mapper, "mapper_configured", on_configured)
        self.pending[rule.model] = (mapper, on_configured)

    def forget(self, model: type) -> None:
        """Detach the pending listener of ``model``, if any."""
        found = self.pending.pop(model, None)
        if found is not None:
            mapper, fn = found
            if sa.event.contains(mapper, "mapper_configured", fn):
                sa.event.remove(mapper, "mapper_configured", fn)

    def detach(self) -> None:
        for model in list(self.pending):
            self.forget(model)
