"""Keep serving when the shared backend fails, and never serve stale data after it heals.

:class:`ResilientBackend` wraps a backend that can fail (Redis) and implements DESIGN.md's
outage rules:

* **Breaker.** After ``threshold`` consecutive errors the primary is skipped (state
  ``open``) for ``cooldown`` seconds; then *one* probe (``PING``) decides: success closes
  the breaker, failure opens it for another cooldown. By default the probe runs in a
  short-lived background thread (started by the first request after the cooldown, or by
  a queued invalidation), so once the breaker is open no request ever waits for a Redis
  timeout: an outage costs ``threshold`` timeouts in total, not one per request.
* **No lost invalidations.** An invalidation (or ``delete``) that cannot be delivered is
  queued and the breaker opens at once: this process must not read entries that the
  lost invalidation should have killed. The background prober tries to deliver it every
  ``_DELIVERY_RETRY`` seconds while the breaker is open (other processes may already read
  Redis again), and recovery delivers what is left *before* the primary is read again
  (state ``recovering`` while it is not empty). If the queue overflows
  ``pending_max``, it is replaced by one namespace epoch bump, which invalidates every
  entry of the prefix (safe, merely cold).
* **Optional fallback.** While the breaker is open a small local backend (short TTL) may
  serve repeats; it is cleared when the primary comes back, since it missed the other
  processes' invalidations. Without a fallback, reads are misses and writes are skipped.
* **Quiet logs.** One warning when the backend goes down (reason, consecutive errors),
  one info line when it is back (duration, errors, skipped operations, delivered
  invalidations); individual errors are logged at debug level only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ..tags import EPOCH_TAG
from .base import Backend, BackendError, Lookup

__all__ = ["UNAVAILABLE_TOKEN", "ResilientBackend"]

log = logging.getLogger("flask_dataroom_cache")

#: The token :meth:`ResilientBackend.versions` hands out while nothing can be stored. Real
#: tokens are random hex with a counter, so an entry stamped with this one never matches:
#: a ``set`` that follows is refused, whichever backend it reaches.
UNAVAILABLE_TOKEN = "~unavailable"

#: Minimum pause between two failed probes of the background prober (cooldown 0).
_MIN_PROBE_GAP = 0.02

#: While open with queued invalidations, how often the prober tries to deliver them early.
_DELIVERY_RETRY = 0.25


def _probe_main(ref: weakref.ReferenceType[ResilientBackend]) -> None:
    """Prober thread body: holds the backend only during a step, so a backend nobody
    uses any more (an app dropped by a test) is collected and its prober ends."""
    while True:
        backend = ref()
        if backend is None:
            return
        delay = backend._probe_step()
        wake = backend._wake
        del backend
        if delay is None:
            return
        if delay > 0 and wake.wait(delay):
            wake.clear()


class ResilientBackend:
    """A :class:`Backend` that turns the primary's failures into misses, queues and probes.

    ``on_event(name)`` is called with ``"errors"`` for every primary error and
    ``"fallback_serves"`` for every hit served by the fallback (the metrics hook).
    ``background_probe=False`` runs the probe inline in the request that finds it due
    (deterministic; used by unit tests with a fake ``clock``).
    """

    def __init__(
        self,
        primary: Backend,
        *,
        fallback: Backend | None = None,
        fallback_ttl: int = 5,
        threshold: int = 5,
        cooldown: float = 5.0,
        pending_max: int = 10_000,
        on_event: Callable[[str], None] | None = None,
        start_open: bool = False,
        background_probe: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        if pending_max < 1:
            raise ValueError("pending_max must be >= 1")
        self.primary = primary
        self.fallback = fallback
        self.fallback_ttl = fallback_ttl
        self.threshold = threshold
        self.cooldown = cooldown
        self.pending_max = pending_max
        self.background_probe = background_probe
        self.name = primary.name
        self._on_event = on_event
        self._clock = clock
        self._init_sync()
        self._failures = 0
        self._is_open = False
        self._open_until = 0.0
        self._down_since = 0.0
        # tag/key -> sequence number of its latest queueing: a delivery removes an item only
        # if it was not queued again meanwhile (that later write needs its own delivery).
        self._pending_tags: dict[str, int] = {}
        self._pending_keys: dict[str, int] = {}
        self._seq = 0
        self._epoch_wanted = 0  # overflow generations
        self._epoch_done = 0
        self._closed = threading.Event()
        # counters (``stats()``)
        self.errors = 0
        self.times_opened = 0
        self.epoch_bumps = 0
        self.fallback_serves = 0
        self._errors_down = 0
        self._skipped_down = 0
        self._delivered_down = 0
        self._next_early = 0.0
        if start_open:  # the factory has logged it: open silently
            self._is_open = True
            self._open_until = clock() + cooldown
            self._down_since = time.monotonic()
            self.times_opened = 1
        ref = weakref.ref(self)

        def _after_fork() -> None:  # locks may be held by threads that the child lacks
            obj = ref()
            if obj is not None:
                obj._init_sync()

        os.register_at_fork(after_in_child=_after_fork)

    def _init_sync(self) -> None:
        self._lock = threading.Lock()  # state and counters; never held across I/O
        self._probe_lock = threading.Lock()  # held by the one thread probing/delivering
        self._prober: threading.Thread | None = None
        self._wake = threading.Event()  # set when something is queued, or on close()

    # -- state ------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``closed`` (healthy), ``open`` (skipped) or ``recovering`` (queue not delivered)."""
        if self._is_open:
            return "open"
        return "recovering" if self._has_pending() else "closed"

    @property
    def pending(self) -> int:
        """Invalidations waiting for delivery (tags + keys, + 1 for a due epoch bump)."""
        return (
            len(self._pending_tags)
            + len(self._pending_keys)
            + int(self._epoch_wanted > self._epoch_done)
        )

    def _has_pending(self) -> bool:
        return bool(
            self._pending_tags or self._pending_keys or self._epoch_wanted > self._epoch_done
        )

    def breaker_stats(self) -> dict[str, Any]:
        """The breaker's state and counters, for ``stats()`` and the Prometheus collector."""
        return {
            "state": self.state,
            "consecutive_failures": self._failures,
            "errors": self.errors,
            "times_opened": self.times_opened,
            "pending_invalidations": self.pending,
            "epoch_bumps": self.epoch_bumps,
            "fallback": self.fallback.name if self.fallback is not None else None,
            "fallback_serves": self.fallback_serves,
        }

    def _event(self, name: str) -> None:
        if self._on_event is not None:
            self._on_event(name)

    def _open(self, reason: str, count: int) -> None:
        """Open (or keep open) the breaker; logs only on the closed -> open transition."""
        with self._lock:
            self._open_until = self._clock() + self.cooldown
            if self._is_open:
                return
            self._is_open = True
            self.times_opened += 1
            self._down_since = time.monotonic()
            self._errors_down = 0
            self._skipped_down = 0
            self._delivered_down = 0
        log.warning(
            "cache backend %s is down (%s; %d consecutive error%s); requests go to the "
            "database%s until it answers again",
            self.name,
            reason,
            count,
            "" if count == 1 else "s",
            " and the local fallback cache" if self.fallback is not None else "",
        )

    def _failed(self, exc: BaseException, *, force_open: bool = False) -> None:
        self._event("errors")
        with self._lock:
            self.errors += 1
            self._failures += 1
            count = self._failures
            if self._is_open:
                self._errors_down += 1
        log.debug("cache backend %s error: %s", self.name, exc)
        if force_open or count >= self.threshold:
            self._open(str(exc) or type(exc).__name__, count)

    def _ok(self) -> None:
        if self._failures:
            with self._lock:
                self._failures = 0

    def _usable(self) -> bool:
        """True if the primary may be used now; starts (or runs) the probe when it is due."""
        if not self._is_open and not self._has_pending():
            return True
        if self._is_open and self._clock() < self._open_until:
            self._skipped_down += 1  # approximate under contention; only for the log line
            return False
        if self.background_probe:
            self._start_prober()
            self._skipped_down += 1
            return False
        return self._recover()

    # -- probing and recovery ---------------------------------------------------------
    def _start_prober(self) -> None:
        """Start the background prober unless it runs. It is started only when there is
        work: a request found the cooldown over, or an invalidation was queued; it exits
        when the breaker closes, or when a probe fails with nothing queued (the next
        request after the cooldown starts it again). An idle process costs nothing."""
        with self._lock:
            if self._closed.is_set() or (self._prober is not None and self._prober.is_alive()):
                return
            thread = threading.Thread(
                target=_probe_main,
                args=(weakref.ref(self),),
                name=f"dataroom-cache-probe-{self.name}",
                daemon=True,
            )
            self._prober = thread
        thread.start()

    def _probe_step(self) -> float | None:
        """One step of the background prober: seconds to sleep, or None to exit.

        While the breaker is open *with queued invalidations*, it tries to deliver them
        every ``_DELIVERY_RETRY`` seconds without closing the breaker: other processes read
        Redis again as soon as it is back, so the shorter the time between Redis answering
        and this queue reaching it, the shorter their stale window.
        """
        if self._closed.is_set():
            return None
        wait = self._open_until - self._clock() if self._is_open else 0.0
        if wait > 0:
            if not self._has_pending():
                return wait
            if time.monotonic() >= self._next_early and not self._deliver_early():
                self._next_early = time.monotonic() + _DELIVERY_RETRY  # at most 4/s
            if not self._has_pending():
                return wait
            return min(wait, max(self._next_early - time.monotonic(), _MIN_PROBE_GAP))
        if self._recover():
            return 0.0 if self._has_pending() else None
        if not self._has_pending():
            return None  # still down and nothing to deliver: the next request restarts it
        return _MIN_PROBE_GAP

    def _recover(self) -> bool:
        """One probe; on success deliver the queue, then close. True if closed now."""
        if not self._probe_lock.acquire(blocking=False):
            return False  # another thread is probing; keep using the database meanwhile
        try:
            if self._is_open and self._clock() < self._open_until:
                return False
            try:
                self.primary.ping()
                while True:
                    with self._lock:
                        if not self._has_pending():
                            # Close only with an empty queue, atomically with the check:
                            # anything queued later is seen by the next _usable().
                            was_open = self._is_open
                            self._is_open = False
                            self._failures = 0
                            break
                    self._deliver_snapshot()
            except BackendError as exc:
                with self._lock:
                    self._errors_down += 1
                    self.errors += 1
                self._event("errors")
                log.debug("cache backend %s still down: %s", self.name, exc)
                self._open(str(exc) or type(exc).__name__, self._failures + 1)
                return False
            if self.fallback is not None:
                # It missed the other processes' invalidations while it served.
                self.fallback.clear()
            if was_open:
                log.info(
                    "cache backend %s is back after %.1fs (%d errors and %d skipped "
                    "operations while down; %d queued invalidations delivered)",
                    self.name,
                    time.monotonic() - self._down_since,
                    self._errors_down,
                    self._skipped_down,
                    self._delivered_down,
                )
            return True
        finally:
            self._probe_lock.release()

    def _deliver_snapshot(self) -> None:
        """Deliver what is queued now (epoch first); raises :class:`BackendError`."""
        with self._lock:
            epoch = self._epoch_wanted
            epoch_due = epoch > self._epoch_done
            tags = dict(self._pending_tags)
            keys = dict(self._pending_keys)
        if epoch_due:
            self.primary.invalidate([EPOCH_TAG])
        if tags:
            self.primary.invalidate(list(tags))
        for key in keys:
            self.primary.delete(key)
        with self._lock:
            if epoch_due:
                self._epoch_done = max(self._epoch_done, epoch)
                self.epoch_bumps += 1
            for pending, done in ((self._pending_tags, tags), (self._pending_keys, keys)):
                for item, seq in done.items():
                    if pending.get(item) == seq:  # not queued again since the snapshot
                        del pending[item]
            self._delivered_down += len(tags) + len(keys) + int(epoch_due)

    def _deliver_early(self) -> bool:
        """Deliver the queue while the breaker stays open (background prober only).

        True if the queue is empty afterwards."""
        if not self._probe_lock.acquire(blocking=False):
            return False
        try:
            self.primary.ping()
            while self._has_pending():
                self._deliver_snapshot()
        except BackendError as exc:
            log.debug("cache backend %s: early delivery failed: %s", self.name, exc)
            return False
        finally:
            self._probe_lock.release()
        log.debug("cache backend %s: queued invalidations delivered early", self.name)
        return True

    def _queue(self, tags: Sequence[str] = (), keys: Sequence[str] = ()) -> None:
        overflow = False
        with self._lock:
            self._seq += 1
            self._pending_tags.update(dict.fromkeys(tags, self._seq))
            self._pending_keys.update(dict.fromkeys(keys, self._seq))
            if len(self._pending_tags) + len(self._pending_keys) > self.pending_max:
                # One epoch bump replaces the whole queue: everything misses after recovery.
                self._pending_tags.clear()
                self._pending_keys.clear()
                overflow = self._epoch_wanted <= self._epoch_done
                self._epoch_wanted += 1
        if overflow:
            log.warning(
                "cache backend %s: more than %d undelivered invalidations; the whole "
                "namespace will be invalidated (epoch bump) when it is back",
                self.name,
                self.pending_max,
            )
        if self.background_probe:
            self._wake.set()  # deliver it as soon as Redis answers (or after a recovery race)
            self._start_prober()

    # -- protocol -----------------------------------------------------------------
    def get(self, key: str, tags: Sequence[str]) -> Lookup:
        if self._usable():
            try:
                res = self.primary.get(key, tags)
            except BackendError as exc:
                self._failed(exc)
                return None, None
            self._ok()
            return res
        if self.fallback is not None:
            res = self.fallback.get(key, tags)
            if res[0] is not None:
                self.fallback_serves += 1
                self._event("fallback_serves")
            return res
        return None, None

    def versions(self, tags: Sequence[str]) -> tuple[str, ...]:
        if self._usable():
            try:
                res = self.primary.versions(tags)
            except BackendError as exc:
                self._failed(exc)
            else:
                self._ok()
                return res
        elif self.fallback is not None:
            return self.fallback.versions(tags)
        return (UNAVAILABLE_TOKEN,) * len(tags)

    def set(
        self, key: str, payload: bytes, ttl: int, tags: Sequence[str], versions: Sequence[str]
    ) -> bool:
        if self._usable():
            try:
                res = self.primary.set(key, payload, ttl, tags, versions)
            except BackendError as exc:
                self._failed(exc)
                return False
            self._ok()
            return res
        if self.fallback is not None:
            return self.fallback.set(key, payload, min(ttl, self.fallback_ttl), tags, versions)
        return False

    def add(self, key: str, payload: bytes, ttl: int) -> bool:
        if self._usable():
            try:
                res = self.primary.add(key, payload, ttl)
            except BackendError as exc:
                self._failed(exc)
                return True  # no lock service: let the caller proceed alone
            self._ok()
            return res
        if self.fallback is not None:
            return self.fallback.add(key, payload, min(ttl, self.fallback_ttl))
        return True

    def release(self, key: str, payload: bytes) -> bool:
        """Release a lock where :meth:`add` may have taken it (the fallback while the
        primary was down, else the primary). Never queued for later: a late compare and
        delete could only find the lock expired, or another holder's."""
        released = False
        if self.fallback is not None:
            released = self.fallback.release(key, payload)
        if self._usable():
            try:
                released = self.primary.release(key, payload) or released
            except BackendError as exc:
                self._failed(exc)  # the lock expires by its TTL
            else:
                self._ok()
        return released

    def delete(self, key: str) -> None:
        if self.fallback is not None:
            self.fallback.delete(key)
        if self._usable():
            try:
                self.primary.delete(key)
            except BackendError as exc:
                self._failed(exc, force_open=True)
            else:
                self._ok()
                return
        self._queue(keys=[key])

    def invalidate(self, tags: Sequence[str]) -> None:
        if not tags:
            return
        if self.fallback is not None:
            self.fallback.invalidate(tags)
        if self._usable():
            try:
                self.primary.invalidate(tags)
            except BackendError as exc:
                self._failed(exc, force_open=True)
            else:
                self._ok()
                return
        self._queue(tags=tags)

    def clear(self) -> int:
        """Clear the primary's namespace (raises :class:`BackendError` if unreachable)."""
        removed = self.fallback.clear() if self.fallback is not None else 0
        return removed + self.primary.clear()

    def ping(self) -> float:
        return self.primary.ping()

    def info(self) -> dict[str, Any]:
        info = self.primary.info()
        info.update(breaker=self.state, pending_invalidations=self.pending)
        return info

    def close(self) -> None:
        """Stop probing; try once to deliver queued invalidations, warn if they are lost."""
        self._closed.set()
        self._wake.set()
        prober = self._prober
        if prober is not None and prober.is_alive() and prober is not threading.current_thread():
            prober.join(timeout=2.0)  # it may be delivering the queue right now
        if self._has_pending():
            with self._lock:
                self._open_until = 0.0
            self._recover()
            if self._has_pending():
                log.warning(
                    "cache backend %s closed with %d undelivered invalidations: other "
                    "processes may serve entries they should have invalidated until their TTL",
                    self.name,
                    self.pending,
                )
        self.primary.close()
        if self.fallback is not None:
            self.fallback.close()
