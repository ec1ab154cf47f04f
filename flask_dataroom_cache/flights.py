"""Computing a missing key once: the single-flight registry and the cross-process lock.

Shared by every path that computes a miss: the view decorator (``views/flight.py``, whose
flights end once a request's final response is known), ``get_or_set`` and
``@cache.memoize`` (``store.py``, ``memoize.py``: :func:`run_once` and
:func:`compute_locked`).

* **Single flight** (:class:`Flights`, one registry per app and user): the first caller
  missing a key leads its flight and computes; the others wait for it (at most
  :data:`FLIGHT_WAIT`) and read what it stored. A thread never waits on a flight while
  it leads another one (a function computing ``a`` that calls ``b`` while another thread
  computes ``b`` calling ``a`` would wait on each other): it computes instead.
* **The cross-process lock** (:class:`EntryLock`): an add-if-absent key
  ``{prefix}:~{kind}:{the entry key without its prefix}`` holding a token of its own,
  released by compare-and-delete (a holder that ran past the TTL never deletes the next
  holder's lock). :func:`compute_locked`: a caller that finds it held polls the cache for
  what the holder stores, takes the lock as soon as it is free, and computes after its
  patience runs out. A lock is not a cached value: no invalidation is sent for it.

This module imports nothing of the package at runtime: it sits below the store.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = [
    "FLIGHT_WAIT",
    "LOCK_TTL",
    "LOCK_WAIT",
    "EntryLock",
    "Flights",
    "compute_locked",
    "run_once",
]

T = TypeVar("T")

#: How long a caller waits for the in-process leader computing the same key.
FLIGHT_WAIT = 10.0
#: TTL of a cross-process lock, unless its user declares one (``lock_timeout=``).
LOCK_TTL = 5
#: How long a caller that lost the cross-process lock polls the cache before computing.
LOCK_WAIT = 5.0


class Flights:
    """Per-app registry of keys being computed in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}
        self._local = threading.local()

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

    def held(self) -> set[str]:
        """The keys whose flight this thread leads through :func:`run_once` (the view
        decorator keeps its own, per request)."""
        keys: set[str] | None = getattr(self._local, "keys", None)
        if keys is None:
            keys = self._local.keys = set()
        return keys


def run_once(
    flights: Flights,
    key: str,
    compute: Callable[[], T],
    reread: Callable[[], Any],
    missing: Any,
    wait: float | None = None,
) -> T:
    """A miss of ``key``: lead its flight and ``compute()`` (which stores the value), or
    wait for the leader and return ``reread()`` (``missing`` when nothing was stored:
    then compute). ``compute`` is also what a call made while this thread already leads
    ``key`` runs (a function calling itself)."""
    held = flights.held()
    if key in held:
        return compute()
    waiting = flights.lead(key)
    if waiting is None:
        held.add(key)
        try:
            return compute()
        finally:
            held.discard(key)
            flights.done(key)
    if not held:  # never wait while leading another flight: compute instead
        waiting.wait(FLIGHT_WAIT if wait is None else wait)
    found = reread()
    if found is not missing:
        return found  # type: ignore[no-any-return]
    return compute()


class EntryLock:
    """The cross-process lock of one entry (see the module docstring)."""

    __slots__ = ("key", "store", "token", "ttl")

    def __init__(self, store: CacheStore, entry_key: str, kind: str, ttl: int | None) -> None:
        prefix = store.settings.key_prefix
        self.key = f"{prefix}:~{kind}:{entry_key[len(prefix) + 1 :]}"
        self.store = store
        self.token = secrets.token_hex(16)
        self.ttl = ttl or LOCK_TTL

    def take(self) -> bool:
        """True when taken, or when the backend cannot say (then compute)."""
        try:
            return self.store.add(self.key, self.token, self.ttl)
        except Exception as exc:
            self.store.report_error("lock", exc)
            return True

    def release(self) -> None:
        """Release the lock if it still holds this token."""
        try:
            self.store.release(self.key, self.token)
        except Exception as exc:
            self.store.report_error("lock release", exc)


def compute_locked(
    lock: EntryLock,
    compute: Callable[[], T],
    reread: Callable[[], Any],
    missing: Any,
    patience: float | None = None,
    *,
    wait: bool = True,
    release: Callable[[Callable[[], None]], None] | None = None,
) -> T:
    """``compute()`` holding ``lock``. If another process holds it, poll ``reread()`` for
    what that holder stores (returned as soon as found), taking the lock as soon as it is
    free (a holder that stored nothing leaves nothing to read); after ``patience`` seconds
    (default :data:`LOCK_WAIT`) compute without it. Without ``wait`` (the caller holds
    something the holder may be waiting for) a held lock means compute at once.
    ``release`` schedules the lock's release after ``compute`` (the view decorator: once
    its fill is written); default: at once."""
    if not lock.take():
        if not wait:
            return compute()
        deadline = time.monotonic() + (LOCK_WAIT if patience is None else patience)
        delay = 0.01
        while True:
            if time.monotonic() >= deadline:
                return compute()
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
            found = reread()
            if found is not missing:
                return found  # type: ignore[no-any-return]
            if lock.take():
                found = reread()  # stored and released since our read
                if found is not missing:
                    lock.release()
                    return found  # type: ignore[no-any-return]
                break
    try:
        return compute()
    finally:
        if release is None:
            lock.release()
        else:
            release(lock.release)
