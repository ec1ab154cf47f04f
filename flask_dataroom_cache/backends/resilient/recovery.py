"""Probing a failed backend and delivering what it missed, one thread at a time.

Once the breaker's cooldown is over, *one* probe (``PING``) decides: on success the queue
of undelivered invalidations is delivered (epoch bump first), and only once it is empty
does the breaker close, atomically with that check (anything queued later is seen by the
next call, and delivered by the next probe); the local fallback is then cleared, since it
missed the other processes' invalidations. On failure the breaker opens for another
cooldown.

By default the probe runs in a short-lived background thread (:meth:`Recovery.start`,
called by the first request after the cooldown, or when an invalidation is queued), so
once the breaker is open no request ever waits for a Redis timeout; it exits when the
breaker closes, or when a probe fails with nothing queued (an idle process costs nothing).
While the breaker is open *with queued invalidations*, the thread tries to deliver them
every ``_DELIVERY_RETRY`` seconds without closing the breaker: other processes read Redis
again as soon as it is back, so the shorter the time between Redis answering and this
queue reaching it, the shorter their stale window.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

from ...tags import EPOCH_TAG
from ..base import Backend, BackendError
from .breaker import CircuitBreaker
from .undelivered import UndeliveredInvalidations

__all__ = ["Recovery"]

log = logging.getLogger("flask_dataroom_cache")

#: Minimum pause between two failed probes of the background prober (cooldown 0).
_MIN_PROBE_GAP = 0.02

#: While open with queued invalidations, how often the prober tries to deliver them early.
_DELIVERY_RETRY = 0.25


def _probe_main(ref: weakref.ReferenceType[Recovery]) -> None:
    """Prober thread body: holds the recovery only during a step, so a backend nobody
    uses any more (an app dropped by a test) is collected and its prober ends."""
    while True:
        recovery = ref()
        if recovery is None:
            return
        delay = recovery.step()
        wake = recovery.wake
        del recovery
        if delay is None:
            return
        if delay > 0 and wake.wait(delay):
            wake.clear()


class Recovery:
    """The probe and the delivery of queued invalidations for one resilient backend."""

    def __init__(
        self,
        primary: Backend,
        breaker: CircuitBreaker,
        undelivered: UndeliveredInvalidations,
        *,
        fallback: Backend | None,
        on_event: Callable[[str], None] | None,
        clock: Callable[[], float],
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self._breaker = breaker
        self._undelivered = undelivered
        self._on_event = on_event
        self._clock = clock
        self.closed = threading.Event()
        self._next_early = 0.0
        self.after_fork()

    def after_fork(self) -> None:
        """Fresh locks and no prober (in a forked child, the parent's thread is gone)."""
        self._probe_lock = threading.Lock()  # held by the one thread probing/delivering
        self._start_lock = threading.Lock()
        self._prober: threading.Thread | None = None
        #: Set when something is queued, or on close(): the prober stops sleeping.
        self.wake = threading.Event()

    def start(self) -> None:
        """Start the background prober unless it runs (or the backend is closed)."""
        with self._start_lock:
            if self.closed.is_set() or (self._prober is not None and self._prober.is_alive()):
                return
            thread = threading.Thread(
                target=_probe_main,
                args=(weakref.ref(self),),
                name=f"dataroom-cache-probe-{self.primary.name}",
                daemon=True,
            )
            self._prober = thread
        thread.start()

    def step(self) -> float | None:
        """One step of the background prober: seconds to sleep, or None to exit."""
        if self.closed.is_set():
            return None
        breaker, undelivered = self._breaker, self._undelivered
        wait = breaker.open_until - self._clock() if breaker.is_open else 0.0
        if wait > 0:
            if not undelivered.has_pending():
                return wait
            if time.monotonic() >= self._next_early and not self._deliver_early():
                self._next_early = time.monotonic() + _DELIVERY_RETRY  # at most 4/s
            if not undelivered.has_pending():
                return wait
            return min(wait, max(self._next_early - time.monotonic(), _MIN_PROBE_GAP))
        if self.recover():
            return 0.0 if undelivered.has_pending() else None
        if not undelivered.has_pending():
            return None  # still down and nothing to deliver: the next request restarts it
        return _MIN_PROBE_GAP

    def recover(self) -> bool:
        """One probe; on success deliver the queue, then close. True if closed now."""
        if not self._probe_lock.acquire(blocking=False):
            return False  # another thread is probing; keep using the database meanwhile
        try:
            if self._breaker.cooling():
                return False
            try:
                self.primary.ping()
                while True:
                    # Close only with an empty queue, atomically with the check: anything
                    # queued later is seen by the next call.
                    closed, was_open = self._undelivered.if_empty(self._breaker.close)
                    if closed:
                        break
                    self._deliver()
            except BackendError as exc:
                if self._on_event is not None:
                    self._on_event("errors")
                self._breaker.probe_failed(exc)
                return False
            if self.fallback is not None:
                # It missed the other processes' invalidations while it served.
                self.fallback.clear()
            if was_open:
                self._breaker.log_back()
                self._breaker.announce("closed", None)
            return True
        finally:
            self._probe_lock.release()

    def _deliver(self) -> None:
        """Deliver what is queued now (epoch first); raises :class:`BackendError`."""
        batch = self._undelivered.batch()
        if batch.epoch_due:
            self.primary.invalidate([EPOCH_TAG])
        if batch.tags:
            self.primary.invalidate(list(batch.tags))
        for key in batch.keys:
            self.primary.delete(key)
        self._undelivered.delivered(batch)
        self._breaker.count_delivered(batch.size)

    def _deliver_early(self) -> bool:
        """Deliver the queue while the breaker stays open (background prober only).

        True if the queue is empty afterwards."""
        if not self._probe_lock.acquire(blocking=False):
            return False
        try:
            self.primary.ping()
            while self._undelivered.has_pending():
                self._deliver()
        except BackendError as exc:
            log.debug("cache backend %s: early delivery failed: %s", self.primary.name, exc)
            return False
        finally:
            self._probe_lock.release()
        log.debug("cache backend %s: queued invalidations delivered early", self.primary.name)
        return True

    def close(self) -> None:
        """Stop probing; then, if anything is still queued, one last probe and delivery."""
        self.closed.set()
        self.wake.set()
        prober = self._prober
        if prober is not None and prober.is_alive() and prober is not threading.current_thread():
            prober.join(timeout=2.0)  # it may be delivering the queue right now
        if self._undelivered.has_pending():
            self._breaker.rewind()
            self.recover()
