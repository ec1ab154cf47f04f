"""What this process knows of the tags of entries with automatic dependencies.

An entry stored with automatic dependencies (docs/auto-tags.md) carries tags a reader
that only knows the declared ones cannot name. :class:`StoredTags` remembers them:

* ``stored``: key -> the tags this process last stored it with (written by the fill,
  ``store.py``). A read names them, so Redis answers from its one-``MGET`` fast path
  instead of the script that reads the entry's own tags, and their tokens, read before
  the computation, start that key's next capture (``versionmemo.py``).
* ``extra``: key -> the tags its last computation captured that the entry does not carry
  (the table tags the bound may collapse into; written by ``compute.stamp_reads``), read
  with them before the next computation.

Only hints: a wrong one costs the script path or a token read, never a wrong answer.
Bounded: each map is cleared when full.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .autotags import AUTO_PREFIXES

__all__ = ["StoredTags"]

#: Bound of each map.
_STORED_TAGS_MAX = 4096
_AUTO_HEADS = frozenset(p[:3] for p in AUTO_PREFIXES)


@dataclass(eq=False)
class StoredTags:
    """The tags of entries stored with automatic dependencies, by key (one per store)."""

    stored: dict[str, tuple[str, ...]] = field(default_factory=dict)
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def known(self, key: str) -> tuple[str, ...] | None:
        """The tags ``key`` was last stored with, if they hold automatic dependencies."""
        return self.stored.get(key) if self.stored else None

    def stored_with(self, key: str, tags: tuple[str, ...]) -> None:
        """``key`` was just stored with ``tags``: remember them if any is automatic."""
        if any(t[:3] in _AUTO_HEADS for t in tags):
            if len(self.stored) >= _STORED_TAGS_MAX:
                self.stored.clear()
            self.stored[key] = tags

    def captured_beside(self, key: str, extra: tuple[str, ...]) -> None:
        """The last computation of ``key`` captured ``extra``, tags its entry lacks."""
        if len(self.extra) >= _STORED_TAGS_MAX:
            self.extra.clear()
        self.extra[key] = extra
