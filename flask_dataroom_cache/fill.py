"""The one fill path: why a computed value was (not) stored.

Every write of a computed value goes through :func:`fill`: ``store.set`` (and so the view
decorator's fill), ``get_or_set`` and ``@cache.memoize`` (``compute.py``), and
``aget_or_set`` (``asyncstore.py``). A value is **not** stored when:

* the cache is disabled (``store.set``: :data:`~.reasons.DISABLED`);
* a ``bypass_checks`` hook says this thread must skip the cache (uncommitted changes,
  ``cache.disabled()``, ...): counted as ``bypasses``, its reason sent as
  ``cache_bypassed``;
* a ``fill_checks`` hook refuses the versions it would be stamped with (the tracker's
  snapshot rule, :data:`~.reasons.SNAPSHOT`): counted as ``bypasses``;
* the backend fails (a ``False``, reported) or refuses the write because a version it
  is stamped with is no longer current (counted as ``set_rejected``: dead on arrival).

The versions: those given, else the ones this thread's last missing ``get`` of the key
saw with the same tags (``versionmemo.py``), else read now. A stored entry with automatic
dependencies has its tags remembered (``storedtags.py``) and is announced by
``entry_stored``. An unserialisable value raises ``TypeError`` (a programming error).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import signals
from .backends.base import BackendError
from .reasons import DISABLED, SNAPSHOT
from .serialization import encode
from .tags import normalize_tags

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = ["fill", "set_value"]


def set_value(
    store: CacheStore,
    key: str,
    value: Any,
    ttl: int | None,
    tags: Iterable[str] | None,
    versions: Sequence[str] | None,
    endpoint: str | None,
) -> bool:
    """``store.set``: encode first (an unserialisable value raises even when disabled),
    then :func:`fill` unless the cache is disabled."""
    payload = encode(value, store.settings.compress_min_bytes, codec=store.codec)  # TypeError
    expiry = store._ttl(ttl)
    norm = normalize_tags(tags)
    if not store.enabled:
        if signals.cache_bypassed.receivers:
            store.bypassed(key, DISABLED)
        return False
    return fill(store, key, value, expiry, norm, versions, endpoint, payload)


def fill(
    store: CacheStore,
    key: str,
    value: Any,
    expiry: int,
    tags: tuple[str, ...],
    versions: Sequence[str] | None,
    endpoint: str | None,
    payload: bytes | None = None,
) -> bool:
    """Store ``value`` (``payload`` when already encoded) stamped with ``versions``;
    True if stored (see the module docstring for every reason it is not)."""
    if store.bypass_checks and (why := store.bypass_reason()) is not None:
        store.skipped(key, why, "bypasses", endpoint)
        return False
    if versions is None:
        versions = store.seen.take(key, tags)
    try:
        if versions is None:
            versions = store.backend.versions(tags)
        if store.fill_checks and any(check(versions) for check in store.fill_checks):
            store.skipped(key, SNAPSHOT, "bypasses", endpoint)
            return False
        if payload is None:
            payload = encode(value, store.settings.compress_min_bytes, codec=store.codec)
        stored = store.backend.set(key, payload, expiry, tags, versions)
    except BackendError as exc:
        store.report_error("write", exc)
        return False
    store.metrics.incr("sets" if stored else "set_rejected", endpoint=endpoint)
    if stored:
        store.stored_tags.stored_with(key, tags)
        if signals.entry_stored.receivers:
            signals.send(signals.entry_stored, store.app_ref(), key=key, tags=tags, ttl=expiry)
    return stored
