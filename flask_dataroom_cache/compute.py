"""The compute step of a miss the store's callers compute: ``get_or_set`` and
``@cache.memoize`` (the views have theirs, ``views/compute.py``).

One miss, in order:

1. :func:`get_or_set` reads (``store.read``): a hit returns; a miss gives the version
   tokens of the entry's tags, read *before* anything is computed.
2. Concurrent misses of the key in this process compute once (single flight,
   ``flights.run_once``): the others wait for the leader and read what it stored; a
   thread whose ``wait_checks`` hook says it must not wait computes itself.
3. :func:`compute_and_fill` runs the computation (inside a ``dataroom_cache.compute``
   span when tracing is on, ``tracing.py``); with automatic dependencies (no declared
   tags, ``CACHE_AUTO_TAGS``) inside :func:`capture_reads`.
4. :func:`fill_computed`, the half after the computation (an awaitable computation can
   share it): :func:`stamp_reads` adds what the capture read to the entry's tags (when
   the tables read cannot be known, nothing is stored), then the key is filled through
   the store's one fill path (``fill.py``), stamped with the tokens of step 1.

The store keeps one-line delegators with the same names (``store.get_or_set``,
``store.compute_and_fill``, ``store.capture_reads``, ``store.stamp_reads``): callers use
those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from . import lookups, readcapture, tracing
from .backends.base import BackendError
from .flights import run_once
from .reasons import MISSING
from .tags import MAX_TAGS_PER_ENTRY, normalize_tags

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = [
    "capture_reads",
    "compute_and_fill",
    "compute_span",
    "fill_computed",
    "get_or_set",
    "set_compute_result",
    "stamp_reads",
]

T = TypeVar("T")


def get_or_set(
    store: CacheStore,
    key: str,
    compute: Callable[[], T],
    ttl: int | None,
    tags: Iterable[str] | None,
    endpoint: str | None,
) -> T:
    """``store.get_or_set``: the cached value, or computed, stored and returned."""
    expiry = store._ttl(ttl)
    norm = normalize_tags(tags)
    auto = tags is None and store.settings.auto_tags
    if store.lookup_log is not None and (log := store.lookup_log()) is not None:
        with lookups.recording(log, "get_or_set", "get_or_set", key, norm) as note:
            return _get_or_set(store, key, compute, expiry, norm, auto, endpoint, note)
    return _get_or_set(store, key, compute, expiry, norm, auto, endpoint, None)


def _get_or_set(
    store: CacheStore,
    key: str,
    compute: Callable[[], T],
    expiry: int,
    norm: tuple[str, ...],
    auto: bool,
    endpoint: str | None,
    note: lookups.Note | None,
) -> T:
    value, versions = store.read(key, norm, endpoint, note)
    if value is not MISSING:
        return value  # type: ignore[no-any-return]
    if versions is None:  # disabled, bypassed or unreachable: nothing will be stored
        return store.compute_and_fill(key, compute, expiry, norm, None, endpoint=endpoint)
    seen: list[tuple[str, ...] | None] = [versions]

    def lead() -> T:
        return store.compute_and_fill(
            key, compute, expiry, norm, seen[0], endpoint=endpoint, auto=auto
        )

    def reread() -> Any:
        found, seen[0] = store.read(key, norm, endpoint, note)
        if note is not None and found is not MISSING:
            note.reason = lookups.WAITED
        return found

    wait = 0.0 if store.wait_checks and store.must_not_wait() else None
    return run_once(store.flights, key, lead, reread, MISSING, wait)


def compute_and_fill(
    store: CacheStore,
    key: str,
    compute: Callable[[], T],
    expiry: int,
    tags: tuple[str, ...],
    versions: Sequence[str] | None,
    endpoint: str | None,
    stored: Callable[[T], Any] | None,
    auto: bool,
) -> T:
    """``store.compute_and_fill``: run ``compute()`` (its reads captured when ``auto``
    and a fill may follow), then :func:`fill_computed` (traced when tracing is on)."""
    with compute_span(store, key, tags, endpoint) as span:
        capture: readcapture.ReadCapture | None = None
        if auto and versions is not None:
            with capture_reads(store, key) as capture:
                value = compute()
        else:
            value = compute()
        done = fill_computed(store, key, value, expiry, tags, versions, endpoint, stored, capture)
        set_compute_result(span, done, versions)
    return value


def compute_span(
    store: CacheStore, key: str, tags: tuple[str, ...], endpoint: str | None
) -> AbstractContextManager[Any]:
    """The ``dataroom_cache.compute`` span around one computation and its fill
    (``tracing.py``), yielding the span; yields ``None`` when tracing is off."""
    if store.tracing is None:
        return nullcontext()
    return store.tracing.compute(key, tags=tags, endpoint=endpoint)


def set_compute_result(span: Any, done: bool, versions: Sequence[str] | None) -> None:
    """Record on ``span`` (None: nothing) what became of the computed value."""
    reason = None if done else "no versions" if versions is None else "refused"
    tracing.set_result(span, "stored" if done else "not_stored", reason)


def fill_computed(
    store: CacheStore,
    key: str,
    value: T,
    expiry: int,
    tags: tuple[str, ...],
    versions: Sequence[str] | None,
    endpoint: str | None,
    stored: Callable[[T], Any] | None,
    capture: readcapture.ReadCapture | None,
) -> bool:
    """The second half of the compute step, once ``value`` is computed: add what
    ``capture`` read to the entry's tags (none when the tables read cannot be known:
    counted, not stored), keep ``stored(value)`` of it when given (:data:`MISSING`:
    nothing), fill. ``versions=None``: nothing is stored. True if stored."""
    if capture is not None and versions is not None:
        stamped = stamp_reads(store, capture, tags, versions, key)
        if stamped is None:  # tables unknown, or a token could not be read
            why = "reads_unknown" if capture.unknown else "bypasses"
            store.metrics.incr(why, endpoint=endpoint)
            return False
        tags, versions = stamped
    if versions is None:
        return False
    data = value if stored is None else stored(value)
    if data is MISSING:
        return False
    return store._fill(key, data, expiry, tags, versions, endpoint)


def capture_reads(store: CacheStore, key: str | None) -> readcapture.CaptureScope:
    """``store.capture_reads``: a scope capturing the reads of the computation run in it,
    starting with the tokens this thread's missing read of ``key`` prefetched (and those
    of the tags its last computation captured beside the entry's, read now: still before
    the computation)."""
    tokens = store.seen.take_prefetched(key)
    if tokens is not None and key is not None:
        extra = store.stored_tags.extra.get(key)
        if extra:
            try:
                tokens.update(zip(extra, store.backend.versions(extra), strict=True))
            except BackendError as exc:
                store.report_error("version read", exc)
    return readcapture.CaptureScope(store, store.backend.versions, store.capture_starters, tokens)


def stamp_reads(
    store: CacheStore,
    capture: readcapture.ReadCapture,
    tags: tuple[str, ...],
    versions: Sequence[str],
    key: str | None,
) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """``store.stamp_reads``: the declared ``tags`` with their ``versions`` plus what
    ``capture`` read, bounded; None: do not store. Remembers, for ``key``, the tags the
    capture read beside the entry's (``storedtags.py``)."""
    stamped = capture.stamp(tags, versions, MAX_TAGS_PER_ENTRY)
    if stamped is not None and key is not None:
        store.stored_tags.captured_beside(
            key, tuple(t for t in capture.tokens if t not in stamped[0])
        )
    return stamped
