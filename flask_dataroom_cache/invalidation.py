"""The invalidation: tags checked, deferred to the commit or delivered now, announced.

``store.invalidate`` (every invalidation: the tracker's commits, ``cache.invalidate``,
memoized functions' ``invalidate``, the CLI) comes here:

* the tags are checked (a list of non-empty strings without newlines; a programming
  error raises) and deduplicated; disabled: nothing happens;
* **deferred**: a ``deferrers`` hook (the tracker, ``tracking/snapshot.py``) may take
  them to deliver at the commit of this thread's open transaction (counted as
  ``deferred_invalidations``);
* **delivered**: one new version token per tag, O(1) (``Backend.invalidate``), inside
  a ``dataroom_cache.invalidate`` span when tracing is on; a backend error is reported,
  never raised (the resilient backend queues what it could not deliver);
* counted (``invalidations``) and announced by ``tags_invalidated`` with their source.

:func:`invalidate_all` bumps the app's epoch: every entry of its namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import signals, tracing
from .backends.base import BackendError
from .tags import EPOCH_TAG

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = ["invalidate", "invalidate_all"]


def invalidate(store: CacheStore, tags: Iterable[str], defer: bool, source: str) -> tuple[str, ...]:
    """``store.invalidate``: the tags delivered now (empty when deferred or disabled)."""
    if isinstance(tags, str):
        raise TypeError("tags must be a list of strings, not a single string")
    wanted = tuple(dict.fromkeys(tags))
    for tag in wanted:
        if not isinstance(tag, str) or not tag or "\n" in tag:
            raise ValueError(f"invalid tag {tag!r}")
    if not wanted or not store.enabled:
        return ()
    if defer and store.deferrers and any(d(wanted) for d in store.deferrers):
        store.metrics.incr("deferred_invalidations", len(wanted))
        return ()
    if store.tracing is not None:
        with store.tracing.invalidation(wanted, source) as span:
            delivered = _deliver(store, wanted)
            tracing.set_result(span, "sent" if delivered else "backend error")
    else:
        _deliver(store, wanted)
    store.metrics.incr("invalidations", len(wanted))
    if signals.tags_invalidated.receivers:
        signals.send(signals.tags_invalidated, store.app_ref(), tags=wanted, source=source)
    return wanted


def _deliver(store: CacheStore, tags: tuple[str, ...]) -> bool:
    try:
        store.backend.invalidate(tags)
    except BackendError as exc:
        store.report_error("invalidation", exc)
        return False
    return True


def invalidate_all(store: CacheStore) -> None:
    """``store.invalidate_all``: bump the epoch now; if this thread's transaction took it
    for its commit, send it now too (and again at the commit: a read in between could
    refill what that transaction is changing)."""
    if not store.invalidate((EPOCH_TAG,)):  # deferred to the commit (or disabled)
        store.invalidate((EPOCH_TAG,), defer=False)
