""":class:`ResilientBackend`: sends each call to the primary, the fallback or nowhere.

* Reads and fills go to the primary while the breaker (:mod:`.breaker`) is closed and
  nothing is queued; otherwise to the fallback if there is one (its entries get the
  short ``fallback_ttl``), else they are misses and skipped writes (``versions`` hands
  out :data:`UNAVAILABLE_TOKEN`, so nothing computed meanwhile is stored). Every primary
  error counts towards opening the breaker.
* An invalidation (or ``delete``) the primary cannot take is queued (:mod:`.undelivered`)
  and opens the breaker at once: this process must not read entries that the lost
  invalidation should have killed.
* When the cooldown is over, the probe and the delivery of the queue
  (:mod:`.recovery`) run in the background, or inline with ``background_probe=False``.
* Lock releases go wherever the lock may have been taken, and are never queued.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ..base import Backend, BackendError, Lookup, RawEntry
from .breaker import CircuitBreaker
from .recovery import Recovery
from .undelivered import UndeliveredInvalidations

__all__ = ["UNAVAILABLE_TOKEN", "ResilientBackend"]

log = logging.getLogger("flask_dataroom_cache")

#: The token :meth:`ResilientBackend.versions` hands out while nothing can be stored. Real
#: tokens are random hex with a counter, so an entry stamped with this one never matches:
#: a ``set`` that follows is refused, whichever backend it reaches.
UNAVAILABLE_TOKEN = "~unavailable"


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
        self._breaker = CircuitBreaker(
            threshold,
            cooldown,
            name=primary.name,
            fallback=fallback is not None,
            start_open=start_open,
            clock=clock,
        )
        self._undelivered = UndeliveredInvalidations(pending_max)
        self._recovery = Recovery(
            primary,
            self._breaker,
            self._undelivered,
            fallback=fallback,
            on_event=on_event,
            clock=clock,
        )
        self.primary = primary
        self.fallback = fallback
        self.fallback_ttl = fallback_ttl
        self.threshold = threshold
        self.cooldown = cooldown
        self.pending_max = pending_max
        self.background_probe = background_probe
        self.name = primary.name
        self._on_event = on_event
        self.fallback_serves = 0
        ref = weakref.ref(self)

        def _after_fork() -> None:  # locks may be held by threads that the child lacks
            obj = ref()
            if obj is not None:
                obj._recovery.after_fork()
                obj._breaker.after_fork()
                obj._undelivered.after_fork()

        os.register_at_fork(after_in_child=_after_fork)

    # -- state ------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``closed`` (healthy), ``open`` (skipped) or ``recovering`` (queue not delivered)."""
        if self._breaker.is_open:
            return "open"
        return "recovering" if self._undelivered.has_pending() else "closed"

    @property
    def pending(self) -> int:
        """Invalidations waiting for delivery (tags + keys, + 1 for a due epoch bump)."""
        return len(self._undelivered)

    @property
    def errors(self) -> int:
        return self._breaker.errors

    @property
    def times_opened(self) -> int:
        return self._breaker.times_opened

    @property
    def epoch_bumps(self) -> int:
        return self._undelivered.epoch_bumps

    def on_state_change(self, listener: Callable[[str, str | None], None]) -> Callable[[], None]:
        """Call ``listener(state, error)`` when the breaker opens (``"open"``, the error
        that opened it) and when the backend is back (``"closed"``, ``None``); returns
        the function that removes it. Not called for a breaker that starts open (the
        backend was unreachable at start: the factory logs that)."""
        listeners = self._breaker.listeners
        listeners.append(listener)

        def remove() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return remove

    def breaker_stats(self) -> dict[str, Any]:
        """The breaker's state and counters, for ``stats()`` and the Prometheus collector."""
        return {
            "state": self.state,
            "consecutive_failures": self._breaker.failures,
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

    def _failed(self, exc: BaseException, *, force_open: bool = False) -> None:
        self._event("errors")
        self._breaker.failure(exc, force_open=force_open)

    def _usable(self) -> bool:
        """True if the primary may be used now; starts (or runs) the probe when it is due."""
        breaker = self._breaker
        if not breaker.is_open and not self._undelivered.has_pending():
            return True
        if breaker.cooling():
            breaker.count_skipped()
            return False
        if self.background_probe:
            self._recovery.start()
            breaker.count_skipped()
            return False
        return self._recovery.recover()

    def _queue(self, tags: Sequence[str] = (), keys: Sequence[str] = ()) -> None:
        if self._undelivered.add(tags, keys):
            log.warning(
                "cache backend %s: more than %d undelivered invalidations; the whole "
                "namespace will be invalidated (epoch bump) when it is back",
                self.name,
                self.pending_max,
            )
        if self.background_probe:
            self._recovery.wake.set()  # deliver it as soon as Redis answers (or after a race)
            self._recovery.start()

    # -- protocol -----------------------------------------------------------------
    def get(self, key: str, tags: Sequence[str]) -> Lookup:
        if self._usable():
            try:
                res = self.primary.get(key, tags)
            except BackendError as exc:
                self._failed(exc)
                return None, None
            self._breaker.success()
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
                self._breaker.success()
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
            self._breaker.success()
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
            self._breaker.success()
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
                self._breaker.success()
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
                self._breaker.success()
                return
        self._queue(keys=[key])

    def inspect(self, key: str) -> RawEntry | None:
        """The primary's entry, read directly (an inspection is an operator's question
        about the shared cache: it raises :class:`BackendError` rather than answer from
        the fallback or count towards the breaker)."""
        return self.primary.inspect(key)

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
                self._breaker.success()
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
        self._recovery.close()
        if self._undelivered.has_pending():
            log.warning(
                "cache backend %s closed with %d undelivered invalidations: other "
                "processes may serve entries they should have invalidated until their TTL",
                self.name,
                self.pending,
            )
        self.primary.close()
        if self.fallback is not None:
            self.fallback.close()
