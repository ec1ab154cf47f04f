"""Keep serving when the shared backend fails, and never serve stale data after it heals.

:class:`ResilientBackend` wraps a backend that can fail (Redis) and implements DESIGN.md's
outage rules:

* **Breaker.** After ``threshold`` consecutive errors the primary is skipped for
  ``cooldown`` seconds; then one thread probes it (``PING``) while the others keep going
  to the database. An outage costs one timeout, not one per request.
* **No lost invalidations.** An invalidation (or ``delete``) that cannot be delivered is
  queued and the breaker opens at once: this process must not read entries that the
  lost invalidation should have killed. Recovery delivers the queue *before* the primary
  is read again. If the queue overflows ``pending_max``, recovery bumps the namespace
  epoch instead, which invalidates everything (safe, merely cold).
* **Optional fallback.** While the primary is unavailable a small local backend (short
  TTL) may serve repeats; it is cleared when the primary comes back, since it missed the
  other processes' invalidations.
* **Quiet logs.** One warning when the backend goes down (with the error count), one info
  line when it recovers; individual errors are logged at debug level.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..tags import EPOCH_TAG
from .base import Backend, BackendError, Lookup

__all__ = ["ResilientBackend"]

log = logging.getLogger("flask_dataroom_cache")


class ResilientBackend:
    """A :class:`Backend` that turns the primary's failures into misses, queues and probes."""

    def __init__(
        self,
        primary: Backend,
        *,
        fallback: Backend | None = None,
        fallback_ttl: int = 5,
        threshold: int = 5,
        cooldown: float = 5.0,
        pending_max: int = 10_000,
        on_error: Callable[[], None] | None = None,
        start_open: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.fallback_ttl = fallback_ttl
        self.threshold = threshold
        self.cooldown = cooldown
        self.pending_max = pending_max
        self.name = primary.name
        self._on_error = on_error
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._errors_while_down = 0
        self._open_until = 0.0
        self._is_open = False
        self._pending_tags: dict[str, None] = {}
        self._pending_keys: dict[str, None] = {}
        self._epoch_due = False
        self.fallback_serves = 0
        if start_open:
            self._open("unreachable at start", count=1)

    # -- state ------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``closed`` (healthy), ``open`` (skipped) or ``recovering`` (queue not delivered)."""
        if self._is_open:
            return "open"
        return "recovering" if self._has_pending() else "closed"

    @property
    def pending(self) -> int:
        """Invalidations waiting for delivery (tags + keys; an overflow counts as one)."""
        return len(self._pending_tags) + len(self._pending_keys) + int(self._epoch_due)

    def _has_pending(self) -> bool:
        return bool(self._pending_tags or self._pending_keys or self._epoch_due)

    def _open(self, reason: str, count: int) -> None:
        with self._lock:
            self._open_until = self._clock() + self.cooldown
            if self._is_open:
                return
            self._is_open = True
        log.warning(
            "cache backend %s is down (%s, %d consecutive errors); "
            "requests go to the database until it answers again",
            self.name,
            reason,
            count,
        )

    def _failed(self, exc: BaseException, *, force_open: bool = False) -> None:
        if self._on_error is not None:
            self._on_error()
        self._failures += 1
        if self._is_open:
            self._errors_while_down += 1
        log.debug("cache backend %s error: %s", self.name, exc)
        if force_open or self._failures >= self.threshold:
            self._open(str(exc) or type(exc).__name__, self._failures)

    def _usable(self) -> bool:
        """True if the primary may be used now; runs the recovery probe when it is due."""
        if not self._is_open and not self._has_pending():
            return True
        if self._is_open and self._clock() < self._open_until:
            return False
        return self._recover()

    def _recover(self) -> bool:
        if not self._lock.acquire(blocking=False):
            return False  # another thread is probing; keep using the database meanwhile
        try:
            if self._is_open and self._clock() < self._open_until:
                return False
            try:
                self.primary.ping()
                if self._epoch_due:
                    self.primary.invalidate([EPOCH_TAG])
                    self._epoch_due = False
                    self._pending_tags.clear()
                    self._pending_keys.clear()
                if self._pending_tags:
                    tags = list(self._pending_tags)
                    self.primary.invalidate(tags)
                    for t in tags:
                        self._pending_tags.pop(t, None)
                for key in list(self._pending_keys):
                    self.primary.delete(key)
                    self._pending_keys.pop(key, None)
            except BackendError as exc:
                self._open_until = self._clock() + self.cooldown
                self._is_open = True
                self._errors_while_down += 1
                log.debug("cache backend %s still down: %s", self.name, exc)
                return False
            was_open = self._is_open
            self._is_open = False
            self._failures = 0
            if self.fallback is not None:
                self.fallback.clear()
            if was_open:
                log.info(
                    "cache backend %s is back (%d errors while down); queued invalidations "
                    "delivered",
                    self.name,
                    self._errors_while_down,
                )
            self._errors_while_down = 0
            return True
        finally:
            self._lock.release()

    def _queue(self, tags: Sequence[str] = (), keys: Sequence[str] = ()) -> None:
        with self._lock:
            self._pending_tags.update(dict.fromkeys(tags))
            self._pending_keys.update(dict.fromkeys(keys))
            if len(self._pending_tags) + len(self._pending_keys) > self.pending_max:
                self._pending_tags.clear()
                self._pending_keys.clear()
                self._epoch_due = True

    def _ok(self) -> None:
        if self._failures:
            self._failures = 0

    # -- protocol -----------------------------------------------------------------
    def get(self, key: str, tags: Sequence[str]) -> Lookup:
        if self._usable():
            try:
                res = self.primary.get(key, tags)
            except BackendError as exc:
                self._failed(exc)
            else:
                self._ok()
                return res
        if self.fallback is not None:
            res = self.fallback.get(key, tags)
            if res[0] is not None:
                self.fallback_serves += 1
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
        if self.fallback is not None:
            return self.fallback.versions(tags)
        raise BackendError(f"cache backend {self.name} unavailable")

    def set(
        self, key: str, payload: bytes, ttl: int, tags: Sequence[str], versions: Sequence[str]
    ) -> bool:
        if self._usable():
            try:
                res = self.primary.set(key, payload, ttl, tags, versions)
            except BackendError as exc:
                self._failed(exc)
            else:
                self._ok()
                return res
        if self.fallback is not None:
            return self.fallback.set(key, payload, min(ttl, self.fallback_ttl), tags, versions)
        return False

    def add(self, key: str, payload: bytes, ttl: int) -> bool:
        if self._usable():
            try:
                return self.primary.add(key, payload, ttl)
            except BackendError as exc:
                self._failed(exc)
        if self.fallback is not None:
            return self.fallback.add(key, payload, min(ttl, self.fallback_ttl))
        return True  # no lock service while down: let the caller proceed alone

    def delete(self, key: str) -> None:
        if self.fallback is not None:
            self.fallback.delete(key)
        if self._usable():
            try:
                self.primary.delete(key)
                return
            except BackendError as exc:
                self._failed(exc, force_open=True)
        self._queue(keys=[key])

    def invalidate(self, tags: Sequence[str]) -> None:
        if not tags:
            return
        if self.fallback is not None:
            self.fallback.invalidate(tags)
        if self._usable():
            try:
                self.primary.invalidate(tags)
                self._ok()
                return
            except BackendError as exc:
                self._failed(exc, force_open=True)
        self._queue(tags=tags)

    def clear(self) -> int:
        removed = self.fallback.clear() if self.fallback is not None else 0
        return removed + self.primary.clear()

    def ping(self) -> float:
        return self.primary.ping()

    def info(self) -> dict[str, Any]:
        info = self.primary.info()
        info.update(breaker=self.state, pending_invalidations=self.pending)
        return info

    def close(self) -> None:
        self.primary.close()
        if self.fallback is not None:
            self.fallback.close()
