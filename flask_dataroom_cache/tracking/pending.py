"""Tags waiting for a commit: one stack of levels per session or connection.

This is where a transaction's tags are merged or dropped (DESIGN.md, "Invalidation follows
the transaction"). A level per open transaction: the root at the bottom, one per savepoint
above it, innermost on top::

    begin(owner)     a root transaction or a savepoint opens: a new, empty level on top
    add(tags)        tags collected now join the innermost level
    release(owner)   a savepoint is released (committed into its parent): its tags merge
                     into the level below
    rollback(owner)  a savepoint (or the root) is rolled back: its level, and any level
                     still open above it, is dropped
    commit()         the root commits: its tags are handed back, to be delivered

A session's levels are owned by its ``SessionTransaction`` objects (``session.py``); a Core
connection's savepoints have no object the events name, so their levels are anonymous
(``owner=None``: release and rollback apply to the innermost savepoint) above a root level
that lives as long as the connection's record (``connection.py``).

Nothing here knows SQLAlchemy; the same object serves the ORM and Core.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PendingTags"]


class PendingTags:
    """Tags collected per open (sub)transaction, innermost level last."""

    __slots__ = ("_levels", "_owners")

    def __init__(self) -> None:
        self._owners: list[object | None] = []
        self._levels: list[set[str]] = []

    def __bool__(self) -> bool:
        """True if any level holds a tag."""
        return any(self._levels)

    def __repr__(self) -> str:
        return f"PendingTags({self._levels!r})"

    @property
    def depth(self) -> int:
        """Open levels: 0 outside a transaction, 1 for a root, +1 per savepoint."""
        return len(self._levels)

    def begin(self, owner: object | None = None) -> None:
        """A transaction (the root when the stack is empty) or a savepoint opens."""
        self._owners.append(owner)
        self._levels.append(set())

    def reset(self, root: object | None = None) -> None:
        """Forget every level; open one for the root transaction ``root``."""
        self._owners[:] = [root]
        self._levels[:] = [set()]

    def clear(self) -> None:
        """Forget every level (the transaction ended)."""
        self._owners.clear()
        self._levels.clear()

    def add(self, tags: Iterable[str]) -> bool:
        """Add ``tags`` to the innermost level; False (nothing kept) when none is open."""
        if not self._levels:
            return False
        self._levels[-1].update(tags)
        return True

    def add_to(self, owner: object, tags: Iterable[str]) -> bool:
        """Add ``tags`` to the level of ``owner`` (the root, say, under open savepoints)."""
        index = self._index(owner)
        if index is None:
            return False
        self._levels[index].update(tags)
        return True

    def release(self, owner: object | None = None) -> None:
        """The savepoint ``owner`` (anonymous: the innermost) was released: its tags (and
        those of any level left open above it) merge into the level below."""
        index = self._index(owner)
        if index is None or index == 0:
            return
        parent = self._levels[index - 1]
        for level in self._levels[index:]:
            parent |= level
        del self._levels[index:], self._owners[index:]

    def rollback(self, owner: object | None = None) -> None:
        """The savepoint or root transaction ``owner`` (anonymous: the innermost savepoint)
        was rolled back: its tags, and those of any level above it, are dropped."""
        index = self._index(owner)
        if index is not None:
            del self._levels[index:], self._owners[index:]

    def commit(self) -> set[str]:
        """The root committed: its tags, moved out (to deliver). The levels stay open
        (empty, for the root) until :meth:`clear`: a savepoint still open above it (its
        connection committed under it) merges into the root later, as usual."""
        if not self._levels:
            return set()
        tags = self._levels[0]
        self._levels[0] = set()
        return tags

    def take_all(self) -> set[str]:
        """Every level's tags, moved out: the levels stay open, empty (another
        transaction takes over what they held)."""
        found: set[str] = set()
        for level in self._levels:
            found |= level
            level.clear()
        return found

    def drain(self) -> set[str]:
        """Every level's tags, moved out; only an empty root level stays (a Core COMMIT,
        ROLLBACK or check-in ends every savepoint)."""
        levels = self._levels
        if len(levels) == 1:  # no savepoint open: the usual case, on every COMMIT
            found = levels[0]
            levels[0] = set()
            return found
        found = self.take_all()
        if len(levels) > 1:
            del levels[1:], self._owners[1:]
        return found

    def _index(self, owner: object | None) -> int | None:
        levels = len(self._levels)
        if owner is None:  # an anonymous savepoint: the innermost one, never the root
            return levels - 1 if levels > 1 else None
        for index in range(levels - 1, -1, -1):
            if self._owners[index] is owner:
                return index
        return None
