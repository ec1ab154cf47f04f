"""The lookups of one request, for a recorder that asks (the debug panel): what is recorded.

A recorder (``flask_dataroom_cache.debug``) puts a :class:`LookupLog` in the request's
WSGI environ under :data:`RECORDER_KEY`; every lookup made in that request is appended to
it as a :class:`Lookup`, in the order they ended, whatever made it:

* a cached view, or a cached function another view calls (``views/recording.py``, from
  the environ it already holds);
* ``cache_get`` / ``cache.get``, ``get_or_set`` (``compute.py``), ``aget_or_set``
  (``asyncstore.py``) and a ``@cache.memoize`` function (``memoize/call.py``): these ask
  the store's ``lookup_log`` hook, which the recorder sets on the app's store when it
  records a request. Unset (no panel on the app), a lookup pays one attribute check.

:func:`recording` times one such lookup; the lookup fills in its :class:`Note` (the
outcome and why) as it runs: the store's read says ``HIT``, ``MISS`` or ``BYPASS`` and
the bypass reason, the caller adds what happened next (a value another caller computed,
a stale entry served).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = [
    "BYPASS",
    "HIT",
    "MISS",
    "RECORDER_KEY",
    "WAITED",
    "Lookup",
    "LookupLog",
    "Note",
    "recording",
]

#: In the WSGI environ of a request being recorded: its :class:`LookupLog`.
RECORDER_KEY = "dataroom_cache.recorder"

HIT = "HIT"
MISS = "MISS"
BYPASS = "BYPASS"
#: The reason of a hit read after waiting for another caller's computation.
WAITED = "computed by another caller (single flight)"

#: What the panel writes before a lookup's name, by kind (nothing: the name says it).
_LABELS = {"view": "view", "function": "function", "memoize": "memoized"}


@dataclass(frozen=True, slots=True)
class Lookup:
    """One lookup of a request."""

    #: The endpoint of a route's view, the unique name of a cached or memoized function
    #: (``module.qualname``), or the API called (``cache_get``, ``get_or_set``,
    #: ``aget_or_set``).
    name: str
    #: True for anything but a route's own view (keyed by its own arguments or key).
    function: bool
    #: The entry's key (``None``: bypassed before it was built).
    key: str | None
    #: The entry's tags (empty when bypassed before they were built).
    tags: tuple[str, ...]
    #: ``HIT``, ``MISS`` or ``BYPASS``.
    outcome: str
    #: Why: the bypass reason, why a miss was not stored, ``stale``; ``None``: nothing to say.
    reason: str | None
    #: Time spent in the call (the computation too, on a miss), in seconds.
    seconds: float
    #: What made it: ``view``, ``function`` (a cached function another view called),
    #: ``memoize``, ``cache_get``, ``get_or_set`` or ``aget_or_set``.
    kind: str = "view"

    @property
    def label(self) -> str:
        """The word the panel writes before :attr:`name` (empty for the API calls)."""
        return _LABELS.get(self.kind, "")


@dataclass
class LookupLog:
    """The lookups of one request, in the order they ended."""

    lookups: list[Lookup] = field(default_factory=list)


@dataclass(slots=True)
class Note:
    """What one recorded lookup did, filled in as it runs."""

    outcome: str = MISS
    reason: str | None = None


@contextmanager
def recording(
    log: LookupLog, kind: str, name: str, key: str, tags: tuple[str, ...]
) -> Iterator[Note]:
    """Time the lookup run in the block and append it to ``log`` when the block ends
    (also when it raises: what was found so far)."""
    note = Note()
    start = time.perf_counter()
    try:
        yield note
    finally:
        log.lookups.append(
            Lookup(
                name=name,
                function=True,
                key=key,
                tags=tags,
                outcome=note.outcome,
                reason=note.reason,
                seconds=time.perf_counter() - start,
                kind=kind,
            )
        )
