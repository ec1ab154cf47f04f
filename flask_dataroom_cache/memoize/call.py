"""One call of a memoized function: the control flow, and nothing else.

:func:`call`, in order:

1. The app's state (``current_app``); outside an application context a ``RuntimeError``
   says so.
2. The key and the tags (``keying``; a ``TypeError`` for arguments a key cannot hold),
   then one read (``store.read``: the entry and, on a miss, the tag versions to stamp on
   what is computed next). The store answers a miss without versions when the cache is
   disabled, unreachable, or this thread holds uncommitted tracked changes (its bypass
   hooks): the function then runs and nothing is stored.
3. A hit returns the stored value (``None`` too: the entry says it is one). After its soft
   expiry (``stale_while_revalidate``) one caller per key (in this process: its flight;
   across processes: a lock) recomputes, the others get the stale value.
4. A miss is computed once in the process (``flights.run_once``: the others wait and read
   what the leader stored; a thread the store's ``wait_checks`` say must not wait, as one
   holding an open SQLite transaction, computes), holding the cross-process lock with
   ``lock=True``
   (``flights.compute_locked``), in the one compute step of every non-view miss,
   :meth:`~flask_dataroom_cache.store.CacheStore.compute_and_fill`: the function runs,
   then its value is stored stamped with the versions read *before* it ran.

Entries are value entries of ``views/returns.py`` (``DRF1``: the soft expiry, then the
codec's encoding), kept ``timeout + stale_while_revalidate``. A value the codec would not
give back identical (a tuple, a dict with non-string keys, an unregistered class) is
returned and not stored (warned once per function).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from flask import current_app, has_app_context

from .. import lookups
from ..flights import EntryLock, compute_locked, run_once
from ..state import EXTENSION_KEY, CacheState
from ..store import MISSING, CacheStore
from ..tags import normalize_tags
from ..views.returns import encode_value, pack_value, unpack_value
from .keying import entry_tag

if TYPE_CHECKING:
    from . import Memoized

__all__ = ["call", "current_state", "stored_value"]

log = logging.getLogger("flask_dataroom_cache")


def current_state(fn: Memoized[..., Any]) -> CacheState:
    """The current app's cache state; a ``RuntimeError`` outside an app context."""
    if not has_app_context():
        raise RuntimeError(
            f"{fn.keys.where} was called outside an application context: memoized "
            "functions use the current app's cache (push one: `with app.app_context():`)"
        )
    state: CacheState | None = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        state = fn.ext.state()  # raises the "not initialised" error
    return state


def call(fn: Memoized[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)``, through the cache (see the module docstring); recorded
    (``lookups.py``) when a recorder watches the app's requests (the debug panel)."""
    state = current_state(fn)
    store = state.store
    prefix = state.settings.key_prefix
    key = fn.keys.key(prefix, args, kwargs)
    tags = normalize_tags(fn.tags_of(args, kwargs, entry_tag(prefix, key)))
    if store.lookup_log is not None and (log := store.lookup_log()) is not None:
        with lookups.recording(log, "memoize", fn.name, key, tags) as note:
            return _call(fn, store, key, tags, args, kwargs, note)
    return _call(fn, store, key, tags, args, kwargs, None)


def _call(
    fn: Memoized[..., Any],
    store: CacheStore,
    key: str,
    tags: tuple[str, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    note: lookups.Note | None,
) -> Any:
    raw, versions = store.read(key, tags, None, note)
    if raw is not MISSING:
        found = unpack_value(raw, store.codec)
        if found is not None:
            if fn.swr and time.time() >= found.soft_expiry:
                fresh = _refresh(fn, store, key, tags, args, kwargs)
                if fresh is not MISSING:
                    if note is not None:
                        note.outcome, note.reason = lookups.MISS, "stale: recomputed"
                    return fresh
                store.metrics.incr("stale_hits")
                if note is not None:
                    note.reason = "stale: served while another caller recomputes"
            return found.value
        store.delete(key)  # not a value entry: broken, or written by something else
        if note is not None:
            note.outcome, note.reason = lookups.MISS, "not a value entry: deleted"
        captured = store.capture(tags)
        versions = captured[1] if captured is not None else None
    if versions is None:  # disabled, bypassed or unreachable: nothing will be stored
        return fn.fn(*args, **kwargs)
    seen: list[tuple[str, ...] | None] = [versions]
    wait = not (store.wait_checks and store.must_not_wait())

    def reread() -> Any:
        raw, seen[0] = store.read(key, tags, None, note)
        found = unpack_value(raw, store.codec) if raw is not MISSING else None
        if found is None:
            return MISSING
        if note is not None:
            note.reason = lookups.WAITED
        return found.value

    def lead() -> Any:
        if not fn.lock:
            return compute(fn, store, key, tags, seen[0], args, kwargs)
        lock = EntryLock(store, key, "lock", None)
        return compute_locked(
            lock,
            lambda: compute(fn, store, key, tags, seen[0], args, kwargs),
            reread,
            MISSING,
            wait=wait,
        )

    return run_once(store.flights, key, lead, reread, MISSING, None if wait else 0.0)


def compute(
    fn: Memoized[..., Any],
    store: CacheStore,
    key: str,
    tags: tuple[str, ...],
    versions: tuple[str, ...] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """The compute step of a memoized miss: the store's (``compute_and_fill``)."""
    expiry = (fn.timeout or store.settings.ttl) + fn.swr
    return store.compute_and_fill(
        key,
        lambda: fn.fn(*args, **kwargs),
        expiry,
        tags,
        versions,
        stored=lambda value: stored_value(fn, store, value),
        auto=store.settings.auto_tags and not fn.ttl_only,
    )


def stored_value(fn: Memoized[..., Any], store: CacheStore, value: Any) -> Any:
    """What the entry of ``value`` holds: the value entry with its soft expiry, or
    :data:`MISSING` (nothing stored) when the codec would not give ``value`` back
    identical (warned once per function)."""
    payload = encode_value(value, store.codec)
    if payload is None:
        if fn.first_warning("value"):
            log.warning(
                "%s returned a %s, which the cache's codec would not give back identical "
                "(tuples come back as lists, dict keys as strings; other classes need "
                "cache.register_type): not cached",
                fn.keys.where,
                type(value).__name__,
            )
        return MISSING
    return pack_value(payload, time.time() + (fn.timeout or store.settings.ttl))


def _refresh(
    fn: Memoized[..., Any],
    store: CacheStore,
    key: str,
    tags: tuple[str, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Past the soft expiry: one caller per key (its flight here, a lock across
    processes) recomputes and gets the fresh value; the others get :data:`MISSING` and
    serve the stale one."""
    flights = store.flights
    if key in flights.held() or flights.lead(key) is not None:
        return MISSING
    token = flights.hold(key)
    try:
        lock = EntryLock(store, key, "swr", None)
        if not lock.take():
            return MISSING
        try:
            captured = store.capture(tags)
            versions = captured[1] if captured is not None else None
            return compute(fn, store, key, tags, versions, args, kwargs)
        finally:
            lock.release()
    finally:
        flights.unhold(token)
        flights.done(key)
