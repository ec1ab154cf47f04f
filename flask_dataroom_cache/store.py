"""The cache facade: get / set / get_or_set / delete / invalidate, with version capture.

This is where DESIGN.md's read-side promises are kept:

* **Capture before compute.** A miss returns the current version tokens of the entry's
  tags; the value computed afterwards is stored stamped with *those* tokens, so an
  invalidation that lands during the computation makes the entry dead on arrival.
  ``get_or_set`` does this in one call; for the seed's ``cache_get`` / compute /
  ``cache_set`` pattern, the tokens seen by a missing ``get`` are remembered per thread
  (a bounded map, cleared at the end of each request) and used by the next ``set`` of the
  same key.
* **Bypass.** Hooks (the session tracker) can say "this thread's database session holds
  uncommitted tracked changes": reads then skip the cache and fills are dropped.
* **Defer.** Hooks can take an invalidation to deliver at commit instead of now.
* **Signals** (``signals.py``, the app as sender, sent only when someone listens):
  ``cache_bypassed`` for each lookup or fill skipped here (:data:`DISABLED`,
  :data:`UNCOMMITTED`, :data:`SNAPSHOT`), ``entry_stored`` for each entry written,
  ``tags_invalidated`` for tags delivered, ``backend_state_changed`` for the breaker's
  transitions (:meth:`CacheStore.watch_backend`).
* **Never raise for the backend.** Backend errors are misses; only programming errors
  (an unserialisable value, a bad tag) reach the caller. :meth:`CacheStore.report_error`
  counts and logs (rate-limited) a backend error, the store's own or a caller's (views).

One name per step, one module per step: the store is the facade, each of its public
names a thin delegator to the module that owns the step.

* :meth:`CacheStore.read` is the one read (value and, on a miss, the versions to stamp
  on what is computed next); :meth:`~CacheStore.get` is the documented read built on it
  (``read.py``).
* Every write of a computed value (``set``, so the view decorator, ``get_or_set``,
  ``@cache.memoize``, ``aget_or_set``) goes through one fill path,
  :meth:`CacheStore._fill`; every reason a value is not stored is there (``fill.py``).
* Every miss the store's callers compute (``get_or_set``, ``@cache.memoize``) runs in one
  compute step, :meth:`CacheStore.compute_and_fill`, once per key in the process (single
  flight, ``flights.py``), its reads captured for automatic dependencies
  (:meth:`~CacheStore.capture_reads`, :meth:`~CacheStore.stamp_reads`; ``compute.py``).
* :meth:`CacheStore.invalidate` and :meth:`~CacheStore.invalidate_all`: checked,
  deferred to the commit or delivered, announced (``invalidation.py``).
* The hooks other parts install (``bypass_checks``, ``fill_checks``, ``deferrers``, ...)
  are :class:`~.hooks.StoreHooks`, which the store is built on (``hooks.py``); what a
  thread's missing reads saw is ``versionmemo.py``; the tags entries with automatic
  dependencies were stored with, ``storedtags.py``; :data:`MISSING` and the reasons the
  store skips a lookup or a fill, ``reasons.py`` (importable from here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from . import compute as computing
from . import fill as filling
from . import invalidation, readcapture, signals, tracing
from . import read as reading
from .backends.base import Backend, BackendError
from .config import Settings
from .customtypes import Codec
from .flights import Flights
from .hooks import StoreHooks
from .metrics import Metrics
from .reasons import BYPASS_HOOK, DISABLED, DISABLED_BLOCK, MISSING, SNAPSHOT, UNCOMMITTED
from .serialization import encode
from .storedtags import StoredTags
from .versionmemo import VersionMemo

__all__ = [
    "BYPASS_HOOK",
    "DISABLED",
    "DISABLED_BLOCK",
    "MISSING",
    "SNAPSHOT",
    "UNCOMMITTED",
    "CacheStore",
]

log = logging.getLogger("flask_dataroom_cache")
T = TypeVar("T")

_ERROR_LOG_INTERVAL = 60.0


class CacheStore(StoreHooks):
    """One app's cache: a backend, its settings, counters and the tracking hooks
    (:class:`~.hooks.StoreHooks`: ``bypass_checks``, ``fill_checks``, ...)."""

    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        metrics: Metrics | None = None,
        codec: Codec | None = None,
    ):
        super().__init__()
        self.backend = backend
        #: The custom types values may hold (``cache.register_type``); None: none.
        self.codec = codec
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.enabled = settings.enabled
        #: Keys being computed in this process by ``get_or_set``, ``@cache.memoize`` and
        #: ``aget_or_set`` (single flight, ``flights.py``; the view decorator has its own).
        self.flights = Flights()
        #: The tags of entries this process stored with automatic dependencies: read
        #: hints (``storedtags.py``).
        self.stored_tags = StoredTags()
        #: What this thread's missing reads saw, for its next fill or capture
        #: (``versionmemo.py``).
        self.seen = VersionMemo()
        self._last_error_log = 0.0
        #: The app this store belongs to (weakly), the sender of its signals (``signals.py``).
        self.app_ref: Callable[[], Any] = lambda: None
        #: OpenTelemetry spans of misses and invalidations (``tracing.py``); None: off.
        self.tracing: tracing.Tracing | None = None
        #: The same, set only when every lookup gets a span (``CACHE_OTEL_TRACE_HITS``):
        #: the hit path checks this one attribute.
        self.lookup_tracing: tracing.Tracing | None = None

    # -- signals and errors ---------------------------------------------------------------
    def bypassed(self, key: str | None, reason: str) -> None:
        """Send ``cache_bypassed`` (callers check ``signals.cache_bypassed.receivers``)."""
        signals.send(signals.cache_bypassed, self.app_ref(), key=key, reason=reason)

    def skipped(self, key: str | None, reason: str, counter: str, endpoint: str | None) -> None:
        """A lookup or fill skipped for ``reason``: count it (``counter``: ``misses`` when
        disabled, else ``bypasses``) and send ``cache_bypassed`` if someone listens."""
        self.metrics.incr(counter, endpoint=endpoint)
        if signals.cache_bypassed.receivers:
            self.bypassed(key, reason)

    def watch_backend(self) -> Callable[[], None] | None:
        """Send ``backend_state_changed`` on each transition of the backend's breaker;
        returns the detach (``None``: the backend has no breaker)."""
        listen = getattr(self.backend, "on_state_change", None)
        if listen is None:
            return None

        def changed(state: str, error: str | None) -> None:
            signal = signals.backend_state_changed
            if signal.receivers:
                signals.send(signal, self.app_ref(), state=state, error=error)

        detach: Callable[[], None] = listen(changed)
        return detach

    def report_error(self, what: str, exc: BaseException) -> None:
        """Count a backend error (``errors``) and log it, at most once a minute: the store's
        own, or one a caller caught around a store call (the view decorator)."""
        self.metrics.incr("errors")
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.warning("cache %s failed, serving from the database: %s", what, exc)

    def _ttl(self, ttl: int | None) -> int:
        if ttl is None:
            return self.settings.ttl
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise ValueError(f"ttl must be an integer >= 1 (seconds), got {ttl!r}")
        return ttl

    def forget_captures(self) -> None:
        """Drop this thread's remembered versions (called at the end of every request)."""
        self.seen.clear()

    # -- reads (read.py) -----------------------------------------------------------------
    # the hot paths are the step's own function, bound as a method (no delegating call):
    #: One read: ``(value, None)`` on a hit, ``(MISSING, versions)`` on a miss (``read.py``).
    read = reading.read

    def get(self, key: str, tags: Iterable[str] | None = None, default: Any = None) -> Any:
        """Return the cached value, or ``default`` on a miss (pass ``default=MISSING`` to
        tell a cached ``None`` from a miss). A miss remembers the versions it saw for this
        thread's next :meth:`set` of ``key``."""
        return reading.get(self, key, tags, default)

    def capture(self, tags: Iterable[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """Current ``(tags, versions)`` to stamp on a value about to be computed."""
        return reading.capture(self, tags)

    # -- the compute step of a miss (compute.py) -------------------------------------------
    def get_or_set(
        self,
        key: str,
        compute: Callable[[], T],
        ttl: int | None = None,
        tags: Iterable[str] | None = None,
        *,
        endpoint: str | None = None,
    ) -> T:
        """Return the cached value, or compute, store (race-free) and return it.

        Concurrent misses of ``key`` in this process compute once (single flight,
        ``flights.run_once``): the others wait for the leader and read what it stored.
        Without ``tags`` (and with ``CACHE_AUTO_TAGS``, the default), the entry depends
        on what ``compute`` read (automatic dependencies, docs/auto-tags.md); with
        ``tags``, on those tags only; ``tags=[]``: on its TTL only."""
        return computing.get_or_set(self, key, compute, ttl, tags, endpoint)

    def compute_and_fill(
        self,
        key: str,
        compute: Callable[[], T],
        expiry: int,
        tags: tuple[str, ...],
        versions: Sequence[str] | None,
        *,
        endpoint: str | None = None,
        stored: Callable[[T], Any] | None = None,
        auto: bool = False,
    ) -> T:
        """The compute step of a miss (``get_or_set``, ``@cache.memoize``): run
        ``compute()``, then fill ``key`` with what it returned (``stored(value)`` when
        given: what to keep of it, :data:`MISSING` to keep nothing), stamped with
        ``versions``, the tokens of ``tags`` read *before* ``compute`` ran. ``None``:
        nothing is stored (disabled, bypassed, or the backend could not say). Inside a
        ``dataroom_cache.compute`` span when tracing is on (``tracing.py``). ``auto``:
        the entry also depends on what ``compute`` reads (automatic dependencies,
        :meth:`capture_reads`), and is not stored when the tables read cannot be known."""
        return computing.compute_and_fill(
            self, key, compute, expiry, tags, versions, endpoint, stored, auto
        )

    def capture_reads(self, key: str | None = None) -> readcapture.CaptureScope:
        """A context manager capturing the reads of the computation run inside it
        (automatic dependencies, docs/auto-tags.md); :meth:`stamp_reads` of what it
        yields gives the entry's tags and versions. Any compute path wraps its
        computation in it. ``key``: the entry computed; when this thread's missing read
        of it named the tags it was last stored with, their tokens (read before the
        computation) are the capture's to start with: a computation reading what it
        read last time reads no token again."""
        return computing.capture_reads(self, key)

    def stamp_reads(
        self,
        capture: readcapture.ReadCapture,
        tags: tuple[str, ...],
        versions: Sequence[str],
        key: str | None = None,
    ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """The declared ``tags`` (normalised, with the ``versions`` read before the
        computation) plus what ``capture`` read, bounded; None: do not store. ``key``:
        the entry's, to remember which tags its next computation will need."""
        return computing.stamp_reads(self, capture, tags, versions, key)

    # -- writes (fill.py, invalidation.py) -------------------------------------------------
    def set(
        self,
        key: str,
        value: Any,
        ttl: int | None = None,
        tags: Iterable[str] | None = None,
        *,
        versions: Sequence[str] | None = None,
        endpoint: str | None = None,
    ) -> bool:
        """Store ``value`` under ``key``; returns True if it was stored.

        The version tokens come from ``versions`` if given, else from this thread's last
        missing ``get`` of the same key with the same tags, else they are read now (then
        the caller must not have read the database before calling ``get``/``versions``:
        prefer :meth:`get_or_set`).
        """
        return filling.set_value(self, key, value, ttl, tags, versions, endpoint)

    #: The one fill path: ``value`` stamped with ``versions``, or every reason it is not
    #: stored (``fill.py``).
    _fill = filling.fill

    def add(self, key: str, value: Any, ttl: int) -> bool:
        """Store only if absent (for locks). True when stored or when no backend can say."""
        if not self.enabled:
            return True
        try:
            return self.backend.add(key, encode(value), self._ttl(ttl))
        except BackendError as exc:
            self.report_error("add", exc)
            return True

    def release(self, key: str, value: Any) -> bool:
        """Remove a lock taken with :meth:`add` only if it still holds ``value`` (the
        holder's own token): a holder that ran past the lock's TTL never removes the next
        holder's. True if removed; False when absent, another's, or the backend failed
        (the lock then expires by its TTL)."""
        if not self.enabled:
            return False
        try:
            return self.backend.release(key, encode(value))
        except BackendError as exc:
            self.report_error("release", exc)
            return False

    def delete(self, key: str) -> None:
        """Remove one entry now (queued by the resilient backend if it cannot be reached)."""
        self.seen.forget(key)
        if not self.enabled:
            return
        try:
            self.backend.delete(key)
        except BackendError as exc:
            self.report_error("delete", exc)

    def invalidate(
        self, tags: Iterable[str], *, defer: bool = True, source: str = "api"
    ) -> tuple[str, ...]:
        """Invalidate ``tags``: now, or at the commit of the open transaction (``defer``).

        Returns the tags that were delivered now (empty when deferred or disabled). Tags
        delivered now are announced by :data:`~flask_dataroom_cache.signals.
        tags_invalidated` with ``source`` (what produced them).
        """
        return invalidation.invalidate(self, tags, defer, source)

    def invalidate_all(self) -> None:
        """Invalidate every entry of this app's namespace (the epoch bump of
        ``flask dataroom-cache invalidate --all``). Sent now; if this thread's session has
        uncommitted changes, sent again at their commit (a read in between could refill
        what that transaction is changing)."""
        invalidation.invalidate_all(self)

    def clear(self) -> int:
        """Remove everything under this app's prefix (raises BackendError if unreachable)."""
        self.forget_captures()
        return self.backend.clear()
