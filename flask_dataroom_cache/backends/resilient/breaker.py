"""The circuit breaker: when to stop calling a failing backend, and when to try it again.

*Closed*: every call goes to the backend; consecutive failures are counted, and the
``threshold``-th opens the breaker (an invalidation that could not be delivered opens it
at once). *Open*: calls are skipped for ``cooldown`` seconds (:meth:`CircuitBreaker.cooling`);
after that one probe decides, run by the resilient backend: success closes the breaker,
failure opens it for another cooldown. An outage therefore costs ``threshold`` timeouts in
total, not one per request.

Quiet logs: one warning when the breaker opens (reason, consecutive errors), one info line
when the backend is back (duration, and the tallies of the outage, :class:`Outage`: errors,
skipped operations, delivered invalidations); individual errors at debug level only.
Thread-safe; it never does I/O but logging.

Listeners (:attr:`CircuitBreaker.listeners`, added through
``ResilientBackend.on_state_change``) hear each transition as ``(state, error)``:
``("open", reason)`` when it opens, ``("closed", None)`` when the backend is back. The
store turns them into the ``backend_state_changed`` signal (backends import nothing
above them, so the breaker only calls what it is given).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CircuitBreaker", "Outage"]

log = logging.getLogger("flask_dataroom_cache")


@dataclass
class Outage:
    """What happened while the breaker was open (for the "back" log line)."""

    #: ``time.monotonic()`` when the breaker opened.
    since: float = 0.0
    errors: int = 0
    #: Operations skipped (approximate under contention; only for the log line).
    skipped: int = 0
    #: Queued invalidations delivered.
    delivered: int = 0


class CircuitBreaker:
    """Open after ``threshold`` consecutive failures, for ``cooldown`` seconds at a time."""

    def __init__(
        self,
        threshold: int,
        cooldown: float,
        *,
        name: str,
        fallback: bool = False,
        start_open: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        self.threshold = threshold
        self.cooldown = cooldown
        #: The backend's name and whether a local fallback serves while open (log lines).
        self.name = name
        self.fallback = fallback
        self._clock = clock
        self._lock = threading.Lock()  # never held across I/O
        self.is_open = False
        self.open_until = 0.0
        #: Consecutive failures (reset by any success).
        self.failures = 0
        self.errors = 0
        self.times_opened = 0
        self.outage = Outage()
        #: Called with ``(state, error)`` on each transition (:meth:`announce`), outside
        #: the lock, in the thread that made it (a request, or the background prober).
        self.listeners: list[Callable[[str, str | None], None]] = []
        if start_open:  # unreachable at start: the factory has logged it, open silently
            self.is_open = True
            self.open_until = clock() + cooldown
            self.outage = Outage(since=time.monotonic())
            self.times_opened = 1

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (another thread may have held it)."""
        self._lock = threading.Lock()

    def cooling(self) -> bool:
        """True while open and the cooldown has not passed (skip; do not probe yet)."""
        return self.is_open and self._clock() < self.open_until

    def failure(self, exc: BaseException, *, force_open: bool = False) -> None:
        """Count a failed call; open at ``threshold`` consecutive failures, or at once with
        ``force_open`` (an invalidation that could not be delivered)."""
        with self._lock:
            self.errors += 1
            self.failures += 1
            count = self.failures
            if self.is_open:
                self.outage.errors += 1
        log.debug("cache backend %s error: %s", self.name, exc)
        if force_open or count >= self.threshold:
            self.open(str(exc) or type(exc).__name__, count)

    def probe_failed(self, exc: BaseException) -> None:
        """A probe failed: count it and open for another cooldown."""
        with self._lock:
            self.outage.errors += 1
            self.errors += 1
        log.debug("cache backend %s still down: %s", self.name, exc)
        self.open(str(exc) or type(exc).__name__, self.failures + 1)

    def success(self) -> None:
        if self.failures:
            with self._lock:
                self.failures = 0

    def open(self, reason: str, count: int) -> None:
        """Open (or keep open) for another cooldown; logs only on the closed -> open
        transition (``count``: the consecutive errors that opened it)."""
        with self._lock:
            self.open_until = self._clock() + self.cooldown
            if self.is_open:
                return
            self.is_open = True
            self.times_opened += 1
            self.outage = Outage(since=time.monotonic())
        log.warning(
            "cache backend %s is down (%s; %d consecutive error%s); requests go to the "
            "database%s until it answers again",
            self.name,
            reason,
            count,
            "" if count == 1 else "s",
            " and the local fallback cache" if self.fallback else "",
        )
        self.announce("open", reason)

    def close(self) -> bool:
        """Close after a successful probe. True if it was open until now. The caller holds
        whatever makes closing safe (the resilient backend: an empty queue)."""
        with self._lock:
            was_open = self.is_open
            self.is_open = False
            self.failures = 0
            return was_open

    def log_back(self) -> None:
        """The one info line once the backend is back (after :meth:`close`)."""
        outage = self.outage
        log.info(
            "cache backend %s is back after %.1fs (%d errors and %d skipped "
            "operations while down; %d queued invalidations delivered)",
            self.name,
            time.monotonic() - outage.since,
            outage.errors,
            outage.skipped,
            outage.delivered,
        )

    def announce(self, state: str, error: str | None) -> None:
        """Tell the listeners about a transition (``"open"`` with its reason, or
        ``"closed"``); a listener that raises is logged and never breaks the caller."""
        for listener in list(self.listeners):
            try:
                listener(state, error)
            except Exception:
                log.exception("cache backend %s: a state listener raised; ignored", self.name)

    def rewind(self) -> None:
        """End the cooldown now (``close()`` of the backend: one last probe)."""
        with self._lock:
            self.open_until = 0.0

    def count_skipped(self) -> None:
        self.outage.skipped += 1  # approximate under contention; only for the log line

    def count_delivered(self, count: int) -> None:
        with self._lock:
            self.outage.delivered += count
