"""Computing a missing entry once: single flight, the cross-process lock, stale refresh.

* **Single flight** (:class:`~flask_dataroom_cache.flights.Flights`, per app): the first
  request missing a key leads its flight and computes; the others wait for it (at most
  :data:`FLIGHT_WAIT`) and read what it stored. The flight ends once the leader's fill is
  stored (after its final response) or dropped, so waiters find the entry when they wake
  up. A request never waits on a flight while it leads one itself (a plain view calling
  cached functions: the same key twice, or two requests each holding the key the other
  wants): it computes instead.
* **The cross-process lock** (``lock=True``): the leader also takes an add-if-absent key
  holding a token of its own (TTL ``lock_timeout``, else :data:`LOCK_TTL`), released by
  compare-and-delete; a process that finds it held polls the cache for what the holder
  stores, taking the lock as soon as it is free (a holder whose response is not stored
  releases it and leaves nothing to read), and computes after ``lock_timeout`` (else
  :data:`LOCK_WAIT`).
* **Stale-while-revalidate**: after an entry's soft expiry, one request per key (in this
  process: its flight; across processes: a lock) recomputes; the others serve the stale
  entry.

The functions act on a :class:`~.call.CachedCall` (its ``read``, ``hit``, ``compute`` and
``after_fill``); the backend errors of a lock are misses (``store.report_error``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ..flights import FLIGHT_WAIT, LOCK_TTL, LOCK_WAIT, EntryLock, Flights, compute_locked

if TYPE_CHECKING:
    from .call import CachedCall

__all__ = [
    "FLIGHT_WAIT",
    "LOCK_TTL",
    "LOCK_WAIT",
    "Flights",
    "compute_once",
    "end_flight",
    "refresh_stale",
]

#: What a poll of the cache returns when the entry is not there yet.
_NOT_FOUND = object()


def compute_once(call: CachedCall, environ: dict[str, Any]) -> Any:
    """A miss: lead the key's flight and compute (holding the lock with ``lock=True``),
    or wait for the leader and read what it stored."""
    record = call.use_record()
    key = call.key
    if key in record.leading:
        # called again in this request (a plain view calling the function twice): the
        # flight is this request's own, released once its final response is known
        return call.compute(environ, "MISS")
    waiting = call.views.flights.lead(key)
    if waiting is not None:
        if record.leading or (call.store.wait_checks and call.store.must_not_wait()):
            # this request holds a flight until its final response: the leader of this
            # one may be waiting on it (a plain view calling a then b, another b then a);
            # or this thread holds a database lock the leader may need (an open SQLite
            # transaction: store.wait_checks); compute rather than wait
            return call.compute(environ, "MISS")
        waiting.wait(FLIGHT_WAIT)
        entry = call.read()
        if entry is not None:
            return call.hit(entry, environ)
        return call.compute(environ, "MISS")
    holding = bool(record.leading)
    record.leading.add(key)
    try:
        if not call.opts.lock:
            return call.compute(environ, "MISS")
        no_wait = holding or bool(call.store.wait_checks and call.store.must_not_wait())
        return _compute_locked(call, environ, wait=not no_wait)
    finally:
        call.after_fill(functools.partial(end_flight, call))


def end_flight(call: CachedCall) -> None:
    """Release the single flight ``call`` leads."""
    if call.record is not None:
        call.record.leading.discard(call.key)
    call.views.flights.done(call.key)


def _compute_locked(call: CachedCall, environ: dict[str, Any], wait: bool = True) -> Any:
    """Compute holding the cross-process lock; if another process holds it, poll the
    cache for what it stores, taking the lock as soon as it is free: a holder whose
    response is not stored (a 404, ``skip()``, a cookie, a HEAD) releases it and leaves
    nothing to read, so the waiters must not poll out ``LOCK_WAIT``. Without ``wait``
    (this request holds another flight and lock until its final response, which the
    holder may be waiting for) a held lock means compute at once."""

    def reread() -> Any:
        entry = call.read()
        return _NOT_FOUND if entry is None else call.hit(entry, environ)

    return compute_locked(
        _lock(call, "lock"),
        lambda: call.compute(environ, "MISS"),
        reread,
        _NOT_FOUND,
        call.opts.lock_timeout or LOCK_WAIT,  # a declared timeout is worth waiting for
        wait=wait,
        release=call.after_fill,
    )


def refresh_stale(call: CachedCall) -> Any:
    """After the soft expiry: one request (per key, across processes) recomputes; the
    others get ``None`` and serve the stale entry."""
    if call.views.flights.lead(call.key) is not None:
        return None
    record = call.use_record()
    record.leading.add(call.key)
    try:
        lock = _lock(call, "swr")
        if not lock.take():
            return None
        try:
            return call.compute(call.ctx.request.environ, "MISS")
        finally:
            call.after_fill(lock.release)
    finally:
        call.after_fill(functools.partial(end_flight, call))


# -- the cross-process lock -------------------------------------------------------------------
def _lock(call: CachedCall, kind: str) -> EntryLock:
    """The cross-process lock of ``call``'s entry (``flights.EntryLock``): its TTL is the
    view's ``lock_timeout``, else :data:`LOCK_TTL`."""
    return EntryLock(call.store, call.key, kind, call.opts.lock_timeout or LOCK_TTL)
