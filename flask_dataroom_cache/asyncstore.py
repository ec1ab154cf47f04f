"""``await cache.aget_or_set(key, compute, ttl=None, tags=None)``: the awaitable twin of
``get_or_set``, with the same promises, and :func:`acompute_and_fill`, the awaitable twin
of the store's compute step (``CacheStore.compute_and_fill``, ``compute.py``).

* **Capture before compute**: the read returns the tag versions current before
  ``compute`` runs; the value is stored stamped with them (``compute.fill_computed``, the
  sync step's fill half, through the one fill path), so an invalidation landing while it
  computes makes the entry dead on arrival.
* **Bypass and snapshot rule**: the store hooks ask about this *unit of work*'s tracked
  sessions (``tracking/unitofwork.py``: this task's, and those of the tasks it was made
  in): an ``AsyncSession`` holding uncommitted changes bypasses the cache in its task and
  in the tasks that task makes; unrelated tasks of the loop are unaffected.
* **Recorded** (``lookups.py``) for the debug panel when a recorder watches the app, as
  ``get_or_set`` is.
* **Single flight**: the store's registry (``flights.py``), shared with ``get_or_set``
  and ``@cache.memoize``: one caller per key computes in this process, sync or async; the
  others await it (their loop keeps running) and read what it stored. A caller asking
  for a key its own compute is computing (its task, or a task made by it) computes
  instead of waiting for itself, and a caller leading a flight never waits on another
  (two computes each needing the other's key would stall each other).
* **Traced**: every computation runs in :func:`acompute_and_fill`, inside the same
  ``dataroom_cache.compute`` span as a sync miss (``tracing.py``).

The cache calls themselves are the sync store's, made in the loop: one Redis round trip
of ~0.1 ms on a local network, cheaper than ``redis.asyncio``'s (see ``docs/async.md``
for the numbers and why); the awaits are the compute and the flight.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from inspect import isawaitable
from typing import TypeVar

from . import compute as computing
from . import lookups
from .flights import FLIGHT_WAIT
from .store import MISSING, CacheStore
from .tags import normalize_tags

__all__ = ["acompute_and_fill", "aget_or_set"]

T = TypeVar("T")


async def _run(compute: Callable[[], Awaitable[T] | T]) -> T:
    result = compute()
    if isawaitable(result):
        return await result  # type: ignore[no-any-return]
    return result


async def acompute_and_fill(
    store: CacheStore,
    key: str,
    compute: Callable[[], Awaitable[T] | T],
    expiry: int,
    tags: tuple[str, ...],
    versions: Sequence[str] | None,
    *,
    endpoint: str | None = None,
    auto: bool = False,
) -> T:
    """The compute step of an async miss: await ``compute()`` (its reads captured when
    ``auto`` and a fill may follow: automatic dependencies, as ``compute_and_fill``), then
    fill ``key`` with its value stamped with ``versions``, read *before* ``compute`` ran
    (``None``: nothing is stored). Inside a ``dataroom_cache.compute`` span when tracing
    is on, with the same ``result`` and ``reason`` as ``CacheStore.compute_and_fill``.

    The capture is a context variable: it follows the awaits of this task (and the tasks
    the computation makes, which copy its context), and the statements an
    ``AsyncSession`` runs for it in SQLAlchemy's greenlets; never another task's."""
    with computing.compute_span(store, key, tags, endpoint) as span:
        capture = None
        if auto and versions is not None:
            with computing.capture_reads(store, key) as capture:
                value = await _run(compute)
        else:
            value = await _run(compute)
        done = computing.fill_computed(
            store, key, value, expiry, tags, versions, endpoint, None, capture
        )
        computing.set_compute_result(span, done, versions)
    return value


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
    auto = tags is None and store.settings.auto_tags  # as get_or_set: no tags, automatic
    if store.lookup_log is not None and (log := store.lookup_log()) is not None:
        with lookups.recording(log, "aget_or_set", "aget_or_set", key, norm) as note:
            return await _aget_or_set(store, key, compute, expiry, norm, endpoint, note, auto)
    return await _aget_or_set(store, key, compute, expiry, norm, endpoint, None, auto)


async def _aget_or_set(
    store: CacheStore,
    key: str,
    compute: Callable[[], Awaitable[T] | T],
    expiry: int,
    norm: tuple[str, ...],
    endpoint: str | None,
    note: lookups.Note | None,
    auto: bool,
) -> T:
    value, versions = store.read(key, norm, endpoint, note)
    if value is not MISSING:
        return value  # type: ignore[no-any-return]
    if versions is None:  # disabled, bypassed or unreachable: no fill, no flight
        return await acompute_and_fill(store, key, compute, expiry, norm, None, endpoint=endpoint)
    flights = store.flights
    held = flights.held()
    if key not in held:  # else: its own compute asks for it again
        flight = flights.lead(key)
        if flight is None:
            token = flights.hold(key)
            try:
                return await acompute_and_fill(
                    store, key, compute, expiry, norm, versions, endpoint=endpoint, auto=auto
                )
            finally:
                flights.unhold(token)
                flights.done(key)
        waited = not held and not (store.wait_checks and store.must_not_wait())
        if waited:
            await flight.wait_async(FLIGHT_WAIT)
        value, versions = store.read(key, norm, endpoint, note)
        if value is not MISSING:
            if note is not None and waited:
                note.reason = lookups.WAITED
            return value  # type: ignore[no-any-return]
    return await acompute_and_fill(
        store, key, compute, expiry, norm, versions, endpoint=endpoint, auto=auto
    )
