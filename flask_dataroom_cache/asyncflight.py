"""Single flight that a waiter in any thread or any event loop can wait on.

One :class:`Flight` per key being computed in this process: the first caller leads it
(computes), the others wait until the leader ends it, then read what it stored. Under
Flask every async view runs in an event loop of its own, in a thread of its own
(``asgiref.async_to_sync``), and an ``asyncio.Event`` belongs to one loop: a waiter in
another loop could never be woken by it. So a flight keeps, per waiter, the waiter's own
loop and a future of that loop; :meth:`Flight.end` resolves each through
``loop.call_soon_threadsafe`` (the one asyncio call documented as safe from another
thread). An async waiter awaits its future (its loop keeps running other tasks); a sync
waiter blocks on a ``threading.Event`` in its own thread, never inside a coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

__all__ = ["FLIGHT_WAIT", "Flight", "Flights"]

#: How long a waiter waits for the leader of the same key (then computes itself).
FLIGHT_WAIT = 10.0


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Flight:
    """One key being computed: its leader's task, and who waits for it."""

    __slots__ = ("_ended", "_lock", "_loops", "leader")

    def __init__(self, leader: Any = None) -> None:
        #: The asyncio task that leads (``None``: sync code): the same task asking again
        #: (a compute that reads its own key) computes rather than wait for itself.
        self.leader = leader
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._loops: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    async def wait(self, timeout: float = FLIGHT_WAIT) -> bool:
        """Await the end of the flight (at most ``timeout`` seconds) without holding the
        loop; True if it ended."""
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

    def wait_sync(self, timeout: float = FLIGHT_WAIT) -> bool:
        """Block this thread (never call it inside a coroutine) until the flight ends."""
        return self._ended.wait(timeout)

    def end(self) -> None:
        """The leader is done (stored, or not): wake every waiter, in its own loop."""
        with self._lock:
            self._ended.set()
            waiters, self._loops = self._loops, []
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop: its waiter is gone
                loop.call_soon_threadsafe(_wake, fut)


class Flights:
    """Per store, the keys being computed in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, Flight] = {}

    def lead(self, key: str, leader: Any = None) -> Flight | None:
        """``None`` if the caller now leads ``key``; else the running flight to wait on."""
        with self._lock:
            flight = self._running.get(key)
            if flight is None:
                self._running[key] = Flight(leader)
            return flight

    def end(self, key: str) -> None:
        """End the flight of ``key``: its waiters wake up."""
        with self._lock:
            flight = self._running.pop(key, None)
        if flight is not None:
            flight.end()
