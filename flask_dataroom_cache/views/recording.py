"""What the cached calls of one request did, for a recorder that asks (the debug panel).

A recorder (``flask_dataroom_cache.debug``) puts a :class:`LookupLog` in the request's
WSGI environ under :data:`RECORDER_KEY` before the view runs (the record types are
``lookups.py``'s, shared with the store's lookups: ``cache_get``, ``get_or_set``,
``@cache.memoize``); each cached view or function called in that request is then timed
and appended to it as a :class:`Lookup` (what it was, its key and tags, ``HIT`` /
``MISS`` / ``BYPASS`` and why). Without a log in the environ a call pays one dict lookup
and nothing is recorded.

:func:`pending_entries` lists the entries a request's misses will write once its final
response is known (``fill``): a recorder that renders before that (the toolbar renders in
an after-request function) shows them as pending.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..lookups import RECORDER_KEY, Lookup, LookupLog
from . import context

if TYPE_CHECKING:
    from flask.ctx import RequestContext

    from .call import CachedCall

__all__ = ["RECORDER_KEY", "Lookup", "LookupLog", "pending_entries", "timed"]


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
                    kind="view" if call.routed else "function",
                )
            )


def pending_entries(ctx: RequestContext) -> list[tuple[str, tuple[str, ...]]]:
    """``(key, tags)`` of each entry the request's misses will write once its final
    response allows it (``fill.PendingFill``), in the order they were kept."""
    record = context.current_record(ctx)
    if record is None:
        return []
    return [(key, tuple(p.tags)) for key, p in record.pending.items()]
