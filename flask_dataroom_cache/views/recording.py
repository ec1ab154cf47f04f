"""What the cached calls of one request did, for a recorder that asks (the debug panel).

A recorder (``flask_dataroom_cache.debug``) puts a :class:`LookupLog` in the request's
WSGI environ under :data:`RECORDER_KEY` before the view runs; each cached view or function
called in that request is then timed and appended to it as a :class:`Lookup` (what it
was, its key and tags, ``HIT`` / ``MISS`` / ``BYPASS`` and why). Without a log in the
environ a call pays one dict lookup and nothing is recorded.

:func:`pending_entries` lists the entries a request's misses will write once its final
response is known (``fill``): a recorder that renders before that (the toolbar renders in
an after-request function) shows them as pending.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import context

if TYPE_CHECKING:
    from flask.ctx import RequestContext

    from .call import CachedCall

__all__ = ["RECORDER_KEY", "Lookup", "LookupLog", "pending_entries", "timed"]

#: In the WSGI environ of a request being recorded: its :class:`LookupLog`.
RECORDER_KEY = "dataroom_cache.recorder"


@dataclass(frozen=True, slots=True)
class Lookup:
    """One cached call of a request."""

    #: The endpoint of a route's view, or the unique name of a cached function another
    #: view called.
    name: str
    #: True for a cached function another view called (keyed by its own arguments).
    function: bool
    #: The entry's key (``None``: bypassed before it was built).
    key: str | None
    #: The entry's tags (empty when bypassed before they were built).
    tags: tuple[str, ...]
    #: ``HIT``, ``MISS`` or ``BYPASS``.
    outcome: str
    #: Why: the bypass reason, why a miss was not stored, ``stale``; ``None``: nothing to say.
    reason: str | None
    #: Time spent in the call (the view's own run on a miss), in seconds.
    seconds: float


@dataclass
class LookupLog:
    """The cached calls of one request, in the order they ended."""

    lookups: list[Lookup] = field(default_factory=list)


def timed(call: CachedCall, log: LookupLog, lookup: Callable[[], Any]) -> Any:
    """Run ``lookup`` (the call's own), timed, and append what it did to ``log``."""
    start = time.perf_counter()
    try:
        return lookup()
    finally:
        if call.outcome:  # "": no lookup (an async function another view calls)
            log.lookups.append(
                Lookup(
                    name=str(call.endpoint) if call.routed else call.func_name(),
                    function=not call.routed,
                    key=call.key or None,
                    tags=tuple(call.tag_list),
                    outcome=call.outcome,
                    reason=call.reason,
                    seconds=time.perf_counter() - start,
                )
            )


def pending_entries(ctx: RequestContext) -> list[tuple[str, tuple[str, ...]]]:
    """``(key, tags)`` of each entry the request's misses will write once its final
    response allows it (``fill.PendingFill``), in the order they were kept."""
    record = context.current_record(ctx)
    if record is None:
        return []
    return [(key, tuple(p.tags)) for key, p in record.pending.items()]
