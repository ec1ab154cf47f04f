"""Computing a missing entry once: single flight, the cross-process lock, stale refresh.

* **Single flight** (:class:`Flights`, per app): the first request missing a key leads
  its flight and computes; the others wait for it (at most :data:`FLIGHT_WAIT`) and read
  what it stored. The flight ends once the leader's fill is stored (after its final
  response) or dropped, so waiters find the entry when they wake up. A request never
  waits on a flight while it leads one itself (a plain view calling cached functions:
  the same key twice, or two requests each holding the key the other wants): it
  computes instead.
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
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

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

#: How long a waiting request waits for the in-process leader computing the same key.
FLIGHT_WAIT = 10.0
#: TTL of the cross-process fill lock (``lock=True``) and of the stale-refresh lock, unless
#: the view declares ``lock_timeout=``.
LOCK_TTL = 5
#: How long a request that lost the cross-process lock polls the cache before computing
#: (a view's ``lock_timeout``, when it declares one).
LOCK_WAIT = 5.0


class Flights:
    """Per-app registry of keys being computed in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}

    def lead(self, key: str) -> threading.Event | None:
        """``None`` if the caller now leads ``key``; else the leader's event to wait on."""
        with self._lock:
            event = self._running.get(key)
            if event is None:
                self._running[key] = threading.Event()
            return event

    def done(self, key: str) -> None:
        """End the flight of ``key``: its waiters wake up."""
        with self._lock:
            event = self._running.pop(key, None)
        if event is not None:
            event.set()


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
        if record.leading:
            # this request holds a flight until its final response: the leader of this
            # one may be waiting on it (a plain view calling a then b, another b then a);
            # compute rather than wait
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
        return _compute_locked(call, environ, wait=not holding)
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
    lock = _Lock(call, "lock")
    if not lock.take():
        if not wait:
            return call.compute(environ, "MISS")
        # a lock with a declared timeout is worth waiting for that long
        deadline = time.monotonic() + (call.opts.lock_timeout or LOCK_WAIT)
        delay = 0.01
        while True:
            if time.monotonic() >= deadline:
                return call.compute(environ, "MISS")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
            entry = call.read()
            if entry is not None:
                return call.hit(entry, environ)
            if lock.take():
                entry = call.read()  # stored and released since our read
                if entry is not None:
                    lock.release()
                    return call.hit(entry, environ)
                break
    try:
        return call.compute(environ, "MISS")
    finally:
        call.after_fill(lock.release)


def refresh_stale(call: CachedCall) -> Any:
    """After the soft expiry: one request (per key, across processes) recomputes; the
    others get ``None`` and serve the stale entry."""
    if call.views.flights.lead(call.key) is not None:
        return None
    record = call.use_record()
    record.leading.add(call.key)
    try:
        lock = _Lock(call, "swr")
        if not lock.take():
            return None
        try:
            return call.compute(call.ctx.request.environ, "MISS")
        finally:
            call.after_fill(lock.release)
    finally:
        call.after_fill(functools.partial(end_flight, call))


# -- the cross-process lock -------------------------------------------------------------------
class _Lock:
    """The cross-process lock of one entry, ``{prefix}:~{kind}:{the entry key without its
    prefix}``, holding a token of its own: only its holder releases it (compare and
    delete: a holder that ran past the TTL never deletes the next holder's lock). Its TTL
    is the view's ``lock_timeout``, else :data:`LOCK_TTL`. A lock is not a cached value: no
    invalidation is published for it (near cache)."""

    __slots__ = ("key", "store", "token", "ttl")

    def __init__(self, call: CachedCall, kind: str) -> None:
        prefix = call.state.settings.key_prefix
        self.key = f"{prefix}:~{kind}:{call.key[len(prefix) + 1 :]}"
        self.store = call.store
        self.token = secrets.token_hex(16)
        self.ttl = call.opts.lock_timeout or LOCK_TTL

    def take(self) -> bool:
        """True when taken, or when the backend cannot say (then compute)."""
        try:
            return self.store.add(self.key, self.token, self.ttl)
        except Exception as exc:
            self.store.report_error("view lock", exc)
            return True

    def release(self) -> None:
        """Release the lock if it still holds this token."""
        try:
            self.store.release(self.key, self.token)
        except Exception as exc:
            self.store.report_error("view lock release", exc)
