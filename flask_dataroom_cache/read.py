"""The read: one lookup of a key and the versions to stamp on what a miss computes.

:func:`read` is the one read every caller goes through (``store.read``; ``store.get``,
``get_or_set``, ``@cache.memoize`` and the view decorator are built on it): one backend
round trip answers the value *and*, on a miss, the version tokens of the entry's tags,
read before anything is computed (capture before compute, DESIGN.md). On the way:

* disabled, or a ``bypass_checks`` hook says this thread must skip the cache: a miss
  that may not be filled (``versions=None``), counted, sent as ``cache_bypassed``;
* inside a computation capturing its reads (``readcapture.py``): a miss, so the reads
  behind a hit are not hidden from that computation;
* an entry stored with automatic dependencies is read by the tags it was last stored
  with (``storedtags.py``), their tokens kept for the next capture (``versionmemo.py``);
* an entry that no longer decodes is a miss, and deleted;
* a backend error is a miss that may not be filled (reported, ``store.report_error``).

:func:`get` remembers a miss's versions for this thread's next ``set`` of the key;
:func:`capture` reads the versions of tags now, for a caller about to compute.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import lookups, readcapture, tracing
from .backends.base import BackendError
from .reasons import DISABLED, MISSING
from .serialization import CodecError, decode
from .tags import normalize_tags

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = ["capture", "get", "read"]


def read(
    store: CacheStore,
    key: str,
    tags: Iterable[str] | None = None,
    endpoint: str | None = None,
    note: lookups.Note | None = None,
) -> tuple[Any, tuple[str, ...] | None]:
    """One read (``store.read``): ``(value, None)`` on a hit, ``(MISSING, versions)`` on
    a miss.

    ``versions`` are the tag tokens current *before* the caller computes the value
    (stamp them on it with ``set(..., versions=...)``); ``None`` when no fill may
    follow (disabled, bypassed, backend error). ``note`` (a recorded lookup) is told
    the outcome and, for a bypass, why. Inside a ``dataroom_cache.lookup`` span when
    every lookup is traced (``CACHE_OTEL_TRACE_HITS``).
    """
    tracer = store.lookup_tracing
    if tracer is None:
        return _read(store, key, tags, endpoint, note)
    norm = normalize_tags(tags)
    with tracer.lookup(key, tags=norm, endpoint=endpoint) as span:
        value, versions = _read(store, key, norm, endpoint, note)
        tracing.set_hit(span, value is not MISSING)
        return value, versions


def _read(
    store: CacheStore,
    key: str,
    tags: Iterable[str] | None,
    endpoint: str | None,
    note: lookups.Note | None,
) -> tuple[Any, tuple[str, ...] | None]:
    if not store.enabled:
        return _skip(store, key, DISABLED, "misses", endpoint, note)
    norm = normalize_tags(tags)
    if store.bypass_checks and (why := store.bypass_reason()) is not None:
        return _skip(store, key, why, "bypasses", endpoint, note)
    if readcapture.capturing(store):
        # inside a computation capturing its reads: a hit would hide the reads
        # behind it from that computation; compute (and refill) instead
        store.metrics.incr("misses", endpoint=endpoint)
        return MISSING, _versions_now(store, norm)
    known = store.stored_tags.known(key)
    try:
        if known is not None and known != norm and set(norm).issubset(known):
            payload, versions = store.backend.get(key, known)
            if versions is not None:  # a miss: the versions of the tags asked about
                by_tag = dict(zip(known, versions, strict=True))
                versions = tuple(by_tag[t] for t in norm)
                # read before the computation: a capture of this key may use them
                store.seen.prefetched = (key, by_tag)
        else:
            payload, versions = store.backend.get(key, norm)
    except BackendError as exc:
        store.report_error("read", exc)
        payload, versions = None, None
    if payload is not None:
        value = _decode(store, key, payload)
        if value is not MISSING:
            store.metrics.incr("hits", endpoint=endpoint)
            if note is not None:
                note.outcome = lookups.HIT
            return value, None
    store.metrics.incr("misses", endpoint=endpoint)
    if note is not None:
        note.outcome = lookups.MISS
        if versions is None:
            note.reason = "backend error: not stored"
    return MISSING, versions


def _skip(
    store: CacheStore,
    key: str,
    reason: str,
    counter: str,
    endpoint: str | None,
    note: lookups.Note | None,
) -> tuple[Any, None]:
    """A read skipped for ``reason``: counted, told, a miss that may not be filled."""
    store.skipped(key, reason, counter, endpoint)
    if note is not None:
        note.outcome, note.reason = lookups.BYPASS, reason
    return MISSING, None


def _decode(store: CacheStore, key: str, payload: bytes) -> Any:
    try:
        return decode(payload, codec=store.codec)
    except CodecError as exc:
        store.report_error(f"decode of {key!r}", exc)
        store.delete(key)
        return MISSING


def get(store: CacheStore, key: str, tags: Iterable[str] | None, default: Any) -> Any:
    """``store.get``: the cached value or ``default``; a miss remembers its versions."""
    if store.lookup_log is not None and (log := store.lookup_log()) is not None:
        norm = normalize_tags(tags)
        with lookups.recording(log, "cache_get", "cache_get", key, norm) as note:
            return _get(store, key, norm, default, note)
    return _get(store, key, tags, default, None)


def _get(
    store: CacheStore,
    key: str,
    tags: Iterable[str] | None,
    default: Any,
    note: lookups.Note | None,
) -> Any:
    value, versions = store.read(key, tags, None, note)
    if versions is not None:
        store.seen.remember(key, normalize_tags(tags), versions)
    return default if value is MISSING else value


def capture(
    store: CacheStore, tags: Iterable[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """``store.capture``: the current ``(tags, versions)`` (None: disabled or unknown)."""
    norm = normalize_tags(tags)
    if not store.enabled:
        return None
    versions = _versions_now(store, norm)
    return None if versions is None else (norm, versions)


def _versions_now(store: CacheStore, tags: Sequence[str]) -> tuple[str, ...] | None:
    """The current tokens of ``tags``; None when the backend cannot say (reported)."""
    try:
        return store.backend.versions(tags)
    except BackendError as exc:
        store.report_error("version read", exc)
        return None
