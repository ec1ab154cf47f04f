"""Computing a missing key once: the single-flight registry and the cross-process lock.

Shared by every path that computes a miss: the view decorator (``views/flight.py``, whose
flights end once a request's final response is known), ``get_or_set``,
``@cache.memoize`` and ``aget_or_set`` (``store.py``, ``memoize.py``, ``asyncstore.py``:
:func:`run_once` and :func:`compute_locked`).

* **Single flight** (:class:`Flights`, one registry per app and user: the store's serves
  ``get_or_set``, ``@cache.memoize`` and ``aget_or_set`` alike, so a sync and an async
  caller of one key compute it once): the first caller missing a key leads its flight
  and computes; the others wait for it (at most :data:`FLIGHT_WAIT`) and read what it
  stored. A :class:`Flight` is waited on from a thread (:meth:`Flight.wait`: blocks it)
  or from a coroutine in any event loop (:meth:`Flight.wait_async`: under Flask each
  async view runs in a loop of its own thread, and an ``asyncio.Event`` belongs to one
  loop, so a flight keeps each waiter's loop and a future of it, resolved through
  ``loop.call_soon_threadsafe``, the one asyncio call documented as safe from another
  thread). A caller never waits on a flight while it leads another one (a function
  computing ``a`` that calls ``b`` while another caller computes ``b`` calling ``a``
  would wait on each other): it computes instead. The keys a caller leads
  (:meth:`Flights.held`) are a ``ContextVar``'s: its thread's, or its task's and those of
  the task that made it (``asyncio.gather`` inside a compute). A thread never blocks on
  a flight led in its own thread (another task of its event loop: blocking would stop
  the leader).
* **The cross-process lock** (:class:`EntryLock`): an add-if-absent key
  ``{prefix}:~{kind}:{the entry key without its prefix}`` holding a token of its own,
  released by compare-and-delete (a holder that ran past the TTL never deletes the next
  holder's lock). :func:`compute_locked`: a caller that finds it held polls the cache for
  what the holder stores, takes the lock as soon as it is free, and computes after its
  patience runs out. A lock is not a cached value: no invalidation is sent for it.

This module imports nothing of the package at runtime: it sits below the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = [
    "FLIGHT_WAIT",
    "LOCK_TTL",
    "LOCK_WAIT",
    "EntryLock",
    "Flight",
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


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Flight:
    """One key being computed: ended (:meth:`set`) by its leader, waited on from any
    thread or event loop."""

    __slots__ = ("_ended", "_lock", "_loops", "thread")

    def __init__(self) -> None:
        #: The thread the leader runs in.
        self.thread = threading.get_ident()
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._loops: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def is_set(self) -> bool:
        return self._ended.is_set()

    def wait(self, timeout: float | None = FLIGHT_WAIT) -> bool:
        """Block this thread until the flight ends (at most ``timeout`` seconds); True if
        it ended. Never inside a coroutine of the leader's own loop: a leader running in
        this very thread (another task of its loop) could not go on, so this returns
        False at once (the caller computes)."""
        if self.thread == threading.get_ident() and not self._ended.is_set():
            return False
        return self._ended.wait(timeout)

    async def wait_async(self, timeout: float = FLIGHT_WAIT) -> bool:
        """Await the end of the flight (at most ``timeout`` seconds) without holding the
        loop, whichever thread or loop leads; True if it ended."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._ended.is_set():
                return True
            self._loops.append((loop, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return False
        return True

    def set(self) -> None:
        """The leader is done (stored, or not): wake every waiter, each in its own loop."""
        with self._lock:
            self._ended.set()
            waiters, self._loops = self._loops, []
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop: its waiter is gone
                loop.call_soon_threadsafe(_wake, fut)


class Flights:
    """Per-app registry of keys being computed in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, Flight] = {}
        self._held: ContextVar[frozenset[str]] = ContextVar(
            "dataroom_cache_flights", default=frozenset()
        )

    def lead(self, key: str) -> Flight | None:
        """``None`` if the caller now leads ``key``; else the running flight to wait on."""
        with self._lock:
            flight = self._running.get(key)
            if flight is None:
                self._running[key] = Flight()
            return flight

    def done(self, key: str) -> None:
        """End the flight of ``key``: its waiters wake up."""
        with self._lock:
            flight = self._running.pop(key, None)
        if flight is not None:
            flight.set()

    def held(self) -> frozenset[str]:
        """The keys whose flight this caller leads through :func:`run_once`, ``_refresh``
        or ``aget_or_set`` (the view decorator keeps its own, per request): its thread's,
        or its task's and those of the tasks it was made in."""
        return self._held.get()

    def hold(self, key: str) -> Token[frozenset[str]]:
        """The caller leads ``key`` until :meth:`unhold` (tasks made meanwhile inherit it)."""
        return self._held.set(self._held.get() | {key})

    def unhold(self, token: Token[frozenset[str]]) -> None:
        self._held.reset(token)


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
        token = flights.hold(key)
        try:
            return compute()
        finally:
            flights.unhold(token)
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
