"""Keep serving when the shared backend fails, and never serve stale data after it heals.

:class:`ResilientBackend` wraps a backend that can fail (Redis) and implements DESIGN.md's
outage rules:

* **Breaker** (:mod:`.breaker`). After ``threshold`` consecutive errors the primary is
  skipped (state ``open``) for ``cooldown`` seconds; then *one* probe (``PING``) decides:
  success closes the breaker, failure opens it for another cooldown. The probe runs in a
  short-lived background thread, so an outage costs ``threshold`` timeouts in total, not
  one per request.
* **No lost invalidations** (:mod:`.undelivered`). An invalidation (or ``delete``) that
  cannot be delivered is queued and the breaker opens at once; the queue is delivered
  before the primary is read again (state ``recovering`` while it is not empty). If it
  overflows ``pending_max``, it is replaced by one namespace epoch bump (safe, merely cold).
* **Optional fallback.** While the breaker is open a small local backend (short TTL) may
  serve repeats; it is cleared when the primary comes back, since it missed the other
  processes' invalidations. Without a fallback, reads are misses and writes are skipped.
* **Quiet logs.** One warning when the backend goes down, one info line when it is back.

:mod:`.backend` holds the wrapper: the routing of each call, probing and recovery.
"""

from __future__ import annotations

from .backend import UNAVAILABLE_TOKEN, ResilientBackend

__all__ = ["UNAVAILABLE_TOKEN", "ResilientBackend"]
