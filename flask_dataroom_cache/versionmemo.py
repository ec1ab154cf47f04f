"""What this thread's missing reads saw, kept for what the thread does next.

Capture before compute (DESIGN.md) for callers that read and fill in two calls:

* **The versions of a missing ``get``**, for the next ``set`` of the same key with the
  same tags (the seed's ``cache_get`` / compute / ``cache_set`` pattern): a bounded map
  per thread, cleared at the end of every request (:meth:`VersionMemo.clear`).
* **The tokens a missing read prefetched**: when the store read an entry by the tags it
  was last stored with (``storedtags.py``), their tokens were read before the
  computation, so the next capture of that key (``compute.capture_reads``) starts
  with them.

Per thread (a ``threading.local``): another thread's reads never stamp this one's fills.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["VersionMemo"]

#: Bound of the versions remembered per thread.
_CAPTURES_MAX = 256


class VersionMemo(threading.local):
    """One store's per-thread memo of what its missing reads saw."""

    def __init__(self) -> None:
        #: Key -> (tags, versions) of this thread's last missing ``get`` of it.
        self.captures: OrderedDict[str, tuple[tuple[str, ...], tuple[str, ...]]] = OrderedDict()
        #: (key, tag -> token) read by this thread's last missing read of a key by the
        #: tags it was last stored with; taken by the next capture.
        self.prefetched: tuple[str, dict[str, str]] | None = None

    def remember(self, key: str, tags: tuple[str, ...], versions: tuple[str, ...]) -> None:
        """Keep the ``versions`` of ``tags`` a missing ``get`` of ``key`` saw."""
        caps = self.captures
        caps[key] = (tags, versions)
        caps.move_to_end(key)
        if len(caps) > _CAPTURES_MAX:
            caps.popitem(last=False)

    def take(self, key: str, tags: tuple[str, ...]) -> tuple[str, ...] | None:
        """The versions remembered for ``key`` if they were read for the same ``tags``
        (forgotten either way)."""
        remembered = self.captures.pop(key, None)
        if remembered is not None and remembered[0] == tags:
            return remembered[1]
        return None

    def forget(self, key: str) -> None:
        """Drop what was remembered for ``key`` (it was deleted)."""
        self.captures.pop(key, None)

    def clear(self) -> None:
        """Drop every remembered version (the end of a request)."""
        if self.captures:
            self.captures.clear()

    def take_prefetched(self, key: str | None) -> dict[str, str] | None:
        """The tokens prefetched for ``key`` (a copy), if the last prefetch was for it;
        the prefetch is used up either way."""
        prefetched, self.prefetched = self.prefetched, None
        if prefetched is None or key is None or prefetched[0] != key:
            return None
        return dict(prefetched[1])
