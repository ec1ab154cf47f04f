"""``await cache.aget_or_set(key, compute, ttl=None, tags=None)``: the awaitable twin of
``get_or_set``, with the same promises.

* **Capture before compute**: the read returns the tag versions current before
  ``compute`` runs; the value is stored stamped with them (``store._fill``, the one fill
  path), so an invalidation landing while it computes makes the entry dead on arrival.
* **Bypass and snapshot rule**: the store hooks ask about this *task*'s tracked sessions
  (``tracking/tasklocal.py``): an ``AsyncSession`` holding uncommitted changes in this
  task bypasses the cache, other tasks of the loop are unaffected.
* **Recorded** (``lookups.py``) for the debug panel when a recorder watches the app, as
  ``get_or_set`` is.
* **Single flight** (``asyncflight.py``): one caller per key computes in this process;
  the others await it (their loop keeps running) and read what it stored; the same task
  asking again for a key it is computing computes instead of waiting for itself.

The cache calls themselves are the sync store's, made in the loop: one Redis round trip
of ~0.1 ms on a local network, cheaper than ``redis.asyncio``'s (see ``docs/async.md``
for the numbers and why); the awaits are the compute and the flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from inspect import isawaitable
from typing import TypeVar

from . import lookups
from .asyncflight import FLIGHT_WAIT
from .store import MISSING, CacheStore
from .tags import normalize_tags

__all__ = ["aget_or_set"]

T = TypeVar("T")


async def _run(compute: Callable[[], Awaitable[T] | T]) -> T:
    result = compute()
    if isawaitable(result):
        return await result  # type: ignore[no-any-return]
    return result


async def aget_or_set(
    store: CacheStore,
    key: str,
    compute: Callable[[], Awaitable[T] | T],
    ttl: int | None = None,
    tags: Iterable[str] | None = None,
    *,
    endpoint: str | None = None,
) -> T:
    """Return the cached value, or await ``compute()``, store it (race-free) and return
    it. ``compute`` is an ``async def`` function (a sync one returning a value works too)."""
    expiry = store._ttl(ttl)
    norm = normalize_tags(tags)
    if store.lookup_log is not None and (log := store.lookup_log()) is not None:
        with lookups.recording(log, "aget_or_set", "aget_or_set", key, norm) as note:
            return await _aget_or_set(store, key, compute, expiry, norm, endpoint, note)
    return await _aget_or_set(store, key, compute, expiry, norm, endpoint, None)


async def _aget_or_set(
    store: CacheStore,
    key: str,
    compute: Callable[[], Awaitable[T] | T],
    expiry: int,
    norm: tuple[str, ...],
    endpoint: str | None,
    note: lookups.Note | None,
) -> T:
    value, versions = store.read(key, norm, endpoint, note)
    if value is not MISSING:
        return value  # type: ignore[no-any-return]
    if versions is None:  # disabled, bypassed or unreachable: no fill, no flight
        return await _run(compute)
    task = asyncio.current_task()
    flight = store.async_flights.lead(key, task)
    if flight is not None:
        if flight.leader is not task or task is None:
            await flight.wait(FLIGHT_WAIT)
            value, versions = store.read(key, norm, endpoint, note)
            if value is not MISSING:
                if note is not None:
                    note.reason = lookups.WAITED
                return value  # type: ignore[no-any-return]
        computed = await _run(compute)
        if versions is not None:
            store._fill(key, computed, expiry, norm, versions, endpoint)
        return computed
    try:
        computed = await _run(compute)
        store._fill(key, computed, expiry, norm, versions, endpoint)
    finally:
        store.async_flights.end(key)
    return computed
