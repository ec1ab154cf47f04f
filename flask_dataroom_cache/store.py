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

One name per step: :meth:`CacheStore.read` is the one read (value and, on a miss, the
versions to stamp on what is computed next); :meth:`~CacheStore.get` is the documented read
built on it; every write of a computed value (``set``, ``get_or_set``, and so the view
decorator, which calls ``set``) goes through one fill path, :meth:`CacheStore._fill`; every
miss the store's callers compute (``get_or_set``, ``@cache.memoize``) runs in one compute
step, :meth:`CacheStore.compute_and_fill`, once per key in the process (single flight,
``flights.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from . import lookups, readcapture, signals, tracing
from .autotags import AUTO_PREFIXES
from .backends.base import Backend, BackendError
from .config import Settings
from .customtypes import Codec
from .flights import Flights, run_once
from .metrics import Metrics
from .serialization import CodecError, decode, encode
from .tags import MAX_TAGS_PER_ENTRY, normalize_tags

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

_CAPTURES_MAX = 256
#: Bound of the memo of the tags of entries stored with automatic dependencies.
_STORED_TAGS_MAX = 4096
_AUTO_HEADS = frozenset(p[:3] for p in AUTO_PREFIXES)
_ERROR_LOG_INTERVAL = 60.0


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: The value :meth:`CacheStore.read` returns on a miss (``None`` is a cacheable value).
MISSING: Any = _Missing()

# Why the store skipped a lookup or a fill (``cache_bypassed``'s ``reason``; the views add
# theirs in ``views/policy.py``).
#: The cache is disabled (``CACHE_ENABLED=False``).
DISABLED = "disabled"
#: This thread's session holds uncommitted tracked changes (the tracker's bypass check).
UNCOMMITTED = "uncommitted changes"
#: The value may predate a version it would be stamped with (the tracker's snapshot rule:
#: a ``fill_checks`` hook, or its bypass check for a transaction older than a commit).
SNAPSHOT = "snapshot rule"
#: Inside a ``cache.disabled()`` block (``disabling.py``).
DISABLED_BLOCK = "cache.disabled()"
#: A ``bypass_checks`` hook that answered ``True`` without naming its reason.
BYPASS_HOOK = "bypass hook"


class CacheStore:
    """One app's cache: a backend, its settings, counters and the tracking hooks."""

    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        metrics: Metrics | None = None,
        codec: Codec | None = None,
    ):
        self.backend = backend
        #: The custom types values may hold (``cache.register_type``); None: none.
        self.codec = codec
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.enabled = settings.enabled
        #: Callables returning True when the current thread must not read or fill.
        #: Each returns why this thread must skip the cache (a reason string, or True for
        #: :data:`BYPASS_HOOK`), or a false value; the first reason found is the one told.
        self.bypass_checks: list[Callable[[], str | bool | None]] = []
        #: Callables that may take tags to invalidate later (at commit); True if taken.
        self.deferrers: list[Callable[[tuple[str, ...]], bool]] = []
        #: Callables given the version tokens a fill would be stamped with; True drops the
        #: fill (the tracker's snapshot rule: the value may predate one of those tokens).
        self.fill_checks: list[Callable[[Sequence[str]], bool]] = []
        #: Called at the end of work another thread did for this one (an async view in
        #: asgiref's loop thread), in that thread: each returns a function the waiting
        #: thread runs to take over what the worker held (the tracker's open sessions),
        #: so its bypass, fill and deferral checks see them.
        self.handovers: list[Callable[[], Callable[[], None]]] = []
        #: Callables returning True when this thread must not wait for another's
        #: computation of a key (single flight, a lock): it holds what that computation
        #: may need (the tracker: an open SQLite transaction). It computes instead.
        self.wait_checks: list[Callable[[], bool]] = []
        #: Keys being computed in this process by ``get_or_set``, ``@cache.memoize`` and
        #: ``aget_or_set`` (single flight, ``flights.py``; the view decorator has its own).
        self.flights = Flights()
        #: Called with each new :class:`~.readcapture.ReadCapture` of this store, in the
        #: computing thread, before the computation runs (the tracker: what this thread's
        #: sessions hold in memory must be read again, or the capture refuses).
        self.capture_starters: list[Callable[[readcapture.ReadCapture], None]] = []
        #: Key -> the tags this process last stored it with, when they hold automatic
        #: dependencies (unknown to a reader that only knows the declared ones): a read
        #: names them, so Redis answers from its one-``MGET`` fast path instead of the
        #: script that reads the entry's own tags. Only a hint: a wrong one costs the
        #: script path, never a wrong answer (bounded, cleared when full).
        self._stored_tags: dict[str, tuple[str, ...]] = {}
        #: Key -> the tags its last computation captured that the entry does not carry.
        self._capture_extra: dict[str, tuple[str, ...]] = {}
        self._local = threading.local()
        self._last_error_log = 0.0
        #: The app this store belongs to (weakly), the sender of its signals (``signals.py``).
        self.app_ref: Callable[[], Any] = lambda: None
        #: OpenTelemetry spans of misses and invalidations (``tracing.py``); None: off.
        self.tracing: tracing.Tracing | None = None
        #: The same, set only when every lookup gets a span (``CACHE_OTEL_TRACE_HITS``):
        #: the hit path checks this one attribute.
        self.lookup_tracing: tracing.Tracing | None = None
        #: The lookup log of the request being recorded (the debug panel, ``lookups.py``),
        #: or None; set by the recorder, None when no recorder watches this app: then
        #: ``get``, ``get_or_set`` and memoized calls pay this one attribute check.
        self.lookup_log: Callable[[], lookups.LookupLog | None] | None = None

    # -- the hooks and errors -------------------------------------------------------------
    def must_bypass(self) -> bool:
        """True when this thread must neither read nor fill (a ``bypass_checks`` hook says so)."""
        return self.bypass_reason() is not None

    def bypass_reason(self) -> str | None:
        """Why this thread must neither read nor fill (the first ``bypass_checks`` hook
        that says so), or None."""
        # a loop, not a generator: this runs on every cached-view hit
        for check in self.bypass_checks:
            found = check()
            if found:
                return found if isinstance(found, str) else BYPASS_HOOK
        return None

    def bypassed(self, key: str | None, reason: str) -> None:
        """Send ``cache_bypassed`` (callers check ``signals.cache_bypassed.receivers``)."""
        signals.send(signals.cache_bypassed, self.app_ref(), key=key, reason=reason)

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

    def must_not_wait(self) -> bool:
        """True when this thread must compute a missing key rather than wait for another
        thread or process computing it (a ``wait_checks`` hook says so)."""
        for check in self.wait_checks:  # noqa: SIM110
            if check():
                return True
        return False

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

    # -- versions a missing get saw, for the next set of the same key -----------------------
    def _captures(self) -> OrderedDict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        caps: OrderedDict[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = getattr(
            self._local, "captures", None
        )
        if caps is None:
            caps = self._local.captures = OrderedDict()
        return caps

    def _remember_versions(
        self, key: str, tags: tuple[str, ...], versions: tuple[str, ...]
    ) -> None:
        caps = self._captures()
        caps[key] = (tags, versions)
        caps.move_to_end(key)
        if len(caps) > _CAPTURES_MAX:
            caps.popitem(last=False)

    def forget_captures(self) -> None:
        """Drop this thread's remembered versions (called at the end of every request)."""
        caps = getattr(self._local, "captures", None)
        if caps:
            caps.clear()

    # -- reads ----------------------------------------------------------------------------
    def read(
        self,
        key: str,
        tags: Iterable[str] | None = None,
        endpoint: str | None = None,
        note: lookups.Note | None = None,
    ) -> tuple[Any, tuple[str, ...] | None]:
        """One read: ``(value, None)`` on a hit, ``(MISSING, versions)`` on a miss.

        ``versions`` are the tag tokens current *before* the caller computes the value
        (stamp them on it with ``set(..., versions=...)``); ``None`` when no fill may
        follow (disabled, bypassed, backend error). ``note`` (a recorded lookup) is told
        the outcome and, for a bypass, why.
        """
        if self.lookup_tracing is not None:
            return self._traced_read(self.lookup_tracing, key, tags, endpoint, note)
        return self._read(key, tags, endpoint, note)

    def _traced_read(
        self,
        tracer: tracing.Tracing,
        key: str,
        tags: Iterable[str] | None,
        endpoint: str | None,
        note: lookups.Note | None = None,
    ) -> tuple[Any, tuple[str, ...] | None]:
        norm = normalize_tags(tags)
        with tracer.lookup(key, tags=norm, endpoint=endpoint) as span:
            value, versions = self._read(key, norm, endpoint, note)
            tracing.set_hit(span, value is not MISSING)
            return value, versions

    def _read(
        self,
        key: str,
        tags: Iterable[str] | None,
        endpoint: str | None,
        note: lookups.Note | None = None,
    ) -> tuple[Any, tuple[str, ...] | None]:
        if not self.enabled:
            self.metrics.incr("misses", endpoint=endpoint)
            if signals.cache_bypassed.receivers:
                self.bypassed(key, DISABLED)
            if note is not None:
                note.outcome, note.reason = lookups.BYPASS, DISABLED
            return MISSING, None
        norm = normalize_tags(tags)
        if self.bypass_checks and (why := self.bypass_reason()) is not None:
            self.metrics.incr("bypasses", endpoint=endpoint)
            if signals.cache_bypassed.receivers:
                self.bypassed(key, why)
            if note is not None:
                note.outcome, note.reason = lookups.BYPASS, why
            return MISSING, None
        if readcapture.capturing(self):
            # inside a computation capturing its reads: a hit would hide the reads
            # behind it from that computation; compute (and refill) instead
            self.metrics.incr("misses", endpoint=endpoint)
            return MISSING, self._capture_versions(norm)
        known = self._stored_tags.get(key) if self._stored_tags else None
        try:
            if known is not None and known != norm and set(norm).issubset(known):
                payload, versions = self.backend.get(key, known)
                if versions is not None:  # a miss: the versions of the tags asked about
                    by_tag = dict(zip(known, versions, strict=True))
                    versions = tuple(by_tag[t] for t in norm)
                    # read before the computation: a capture of this key may use them
                    self._local.prefetched = (key, by_tag)
            else:
                payload, versions = self.backend.get(key, norm)
        except BackendError as exc:
            self.report_error("read", exc)
            payload, versions = None, None
        if payload is not None:
            value = self._decode(key, payload)
            if value is not MISSING:
                self.metrics.incr("hits", endpoint=endpoint)
                if note is not None:
                    note.outcome = lookups.HIT
                return value, None
        self.metrics.incr("misses", endpoint=endpoint)
        if note is not None:
            note.outcome = lookups.MISS
            if versions is None:
                note.reason = "backend error: not stored"
        return MISSING, versions

    def _decode(self, key: str, payload: bytes) -> Any:
        try:
            return decode(payload, codec=self.codec)
        except CodecError as exc:
            self.report_error(f"decode of {key!r}", exc)
            self.delete(key)
            return MISSING

    def get(self, key: str, tags: Iterable[str] | None = None, default: Any = None) -> Any:
        """Return the cached value, or ``default`` on a miss (pass ``default=MISSING`` to
        tell a cached ``None`` from a miss). A miss remembers the versions it saw for this
        thread's next :meth:`set` of ``key``."""
        if self.lookup_log is not None and (log := self.lookup_log()) is not None:
            norm = normalize_tags(tags)
            with lookups.recording(log, "cache_get", "cache_get", key, norm) as note:
                return self._get(key, norm, default, note)
        return self._get(key, tags, default, None)

    def _get(
        self, key: str, tags: Iterable[str] | None, default: Any, note: lookups.Note | None
    ) -> Any:
        value, versions = self.read(key, tags, None, note)
        if versions is not None:
            self._remember_versions(key, normalize_tags(tags), versions)
        return default if value is MISSING else value

    def capture(self, tags: Iterable[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """Current ``(tags, versions)`` to stamp on a value about to be computed."""
        norm = normalize_tags(tags)
        if not self.enabled:
            return None
        try:
            return norm, self.backend.versions(norm)
        except BackendError as exc:
            self.report_error("version read", exc)
            return None

    def _capture_versions(self, tags: Sequence[str]) -> tuple[str, ...] | None:
        try:
            return self.backend.versions(tags)
        except BackendError as exc:
            self.report_error("version read", exc)
            return None

    def capture_reads(self, key: str | None = None) -> readcapture.CaptureScope:
        """A context manager capturing the reads of the computation run inside it
        (automatic dependencies, docs/auto-tags.md); :meth:`stamp_reads` of what it
        yields gives the entry's tags and versions. Any compute path wraps its
        computation in it. ``key``: the entry computed; when this thread's missing read
        of it named the tags it was last stored with, their tokens (read before the
        computation) are the capture's to start with: a computation reading what it
        read last time reads no token again."""
        prefetched = getattr(self._local, "prefetched", None)
        tokens: dict[str, str] | None = None
        if prefetched is not None:
            self._local.prefetched = None
            if key is not None and prefetched[0] == key:
                tokens = dict(prefetched[1])
                # the tags the last computation captured but the entry does not carry
                # (the table tags the bound may collapse into): read now, still before
                extra = self._capture_extra.get(key)
                if extra:
                    try:
                        tokens.update(zip(extra, self.backend.versions(extra), strict=True))
                    except BackendError as exc:
                        self.report_error("version read", exc)
        return readcapture.CaptureScope(self, self.backend.versions, self.capture_starters, tokens)

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
        stamped = capture.stamp(tags, versions, MAX_TAGS_PER_ENTRY)
        if stamped is not None and key is not None:
            extra = tuple(t for t in capture.tokens if t not in stamped[0])
            if len(self._capture_extra) >= _STORED_TAGS_MAX:
                self._capture_extra.clear()
            self._capture_extra[key] = extra
        return stamped

    # -- writes ---------------------------------------------------------------------------
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
        payload = encode(value, self.settings.compress_min_bytes, codec=self.codec)  # TypeError
        expiry = self._ttl(ttl)
        norm = normalize_tags(tags)
        if not self.enabled:
            if signals.cache_bypassed.receivers:
                self.bypassed(key, DISABLED)
            return False
        return self._fill(key, value, expiry, norm, versions, endpoint, payload)

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
        expiry = self._ttl(ttl)
        norm = normalize_tags(tags)
        auto = tags is None and self.settings.auto_tags
        if self.lookup_log is not None and (log := self.lookup_log()) is not None:
            with lookups.recording(log, "get_or_set", "get_or_set", key, norm) as note:
                return self._get_or_set(key, compute, expiry, norm, auto, endpoint, note)
        return self._get_or_set(key, compute, expiry, norm, auto, endpoint, None)

    def _get_or_set(
        self,
        key: str,
        compute: Callable[[], T],
        expiry: int,
        norm: tuple[str, ...],
        auto: bool,
        endpoint: str | None,
        note: lookups.Note | None,
    ) -> T:
        value, versions = self.read(key, norm, endpoint, note)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        if versions is None:  # disabled, bypassed or unreachable: nothing will be stored
            return self.compute_and_fill(key, compute, expiry, norm, None, endpoint=endpoint)
        seen: list[tuple[str, ...] | None] = [versions]

        def lead() -> T:
            return self.compute_and_fill(
                key, compute, expiry, norm, seen[0], endpoint=endpoint, auto=auto
            )

        def reread() -> Any:
            found, seen[0] = self.read(key, norm, endpoint, note)
            if note is not None and found is not MISSING:
                note.reason = lookups.WAITED
            return found

        wait = 0.0 if self.wait_checks and self.must_not_wait() else None
        return run_once(self.flights, key, lead, reread, MISSING, wait)

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
        if self.tracing is None:
            return self._compute_and_fill(
                key, compute, expiry, tags, versions, endpoint, stored, auto
            )[0]
        with self.tracing.compute(key, tags=tags, endpoint=endpoint) as span:
            value, done = self._compute_and_fill(
                key, compute, expiry, tags, versions, endpoint, stored, auto
            )
            reason = None if done else "no versions" if versions is None else "refused"
            tracing.set_result(span, "stored" if done else "not_stored", reason)
            return value

    def _compute_and_fill(
        self,
        key: str,
        compute: Callable[[], T],
        expiry: int,
        tags: tuple[str, ...],
        versions: Sequence[str] | None,
        endpoint: str | None,
        stored: Callable[[T], Any] | None,
        auto: bool = False,
    ) -> tuple[T, bool]:
        if auto and versions is not None:
            with self.capture_reads(key) as capture:
                value = compute()
            stamped = self.stamp_reads(capture, tags, versions, key)
            if stamped is None:  # tables unknown, or a token could not be read
                why = "reads_unknown" if capture.unknown else "bypasses"
                self.metrics.incr(why, endpoint=endpoint)
                return value, False
            tags, versions = stamped
        else:
            value = compute()
        done = False
        if versions is not None:
            data = value if stored is None else stored(value)
            if data is not MISSING:
                done = self._fill(key, data, expiry, tags, versions, endpoint)
        return value, done

    def _fill(
        self,
        key: str,
        value: Any,
        expiry: int,
        tags: tuple[str, ...],
        versions: Sequence[str] | None,
        endpoint: str | None,
        payload: bytes | None = None,
    ) -> bool:
        """The one fill path: store ``value`` (``payload`` when already encoded) stamped
        with ``versions``, unless this thread must bypass or a ``fill_checks`` hook refuses
        those versions (both counted as ``bypasses``). ``versions=None``: the ones this
        thread's last missing :meth:`get` of ``key`` saw with the same tags, else read now.
        A backend error is a ``False``; an unserialisable value raises ``TypeError``."""
        if self.bypass_checks and (why := self.bypass_reason()) is not None:
            self.metrics.incr("bypasses", endpoint=endpoint)
            if signals.cache_bypassed.receivers:
                self.bypassed(key, why)
            return False
        if versions is None:
            remembered = self._captures().pop(key, None)
            if remembered is not None and remembered[0] == tags:
                versions = remembered[1]
        try:
            if versions is None:
                versions = self.backend.versions(tags)
            if self.fill_checks and any(check(versions) for check in self.fill_checks):
                self.metrics.incr("bypasses", endpoint=endpoint)
                if signals.cache_bypassed.receivers:
                    self.bypassed(key, SNAPSHOT)
                return False
            if payload is None:
                payload = encode(value, self.settings.compress_min_bytes, codec=self.codec)
            stored = self.backend.set(key, payload, expiry, tags, versions)
        except BackendError as exc:
            self.report_error("write", exc)
            return False
        self.metrics.incr("sets" if stored else "set_rejected", endpoint=endpoint)
        if stored and any(t[:3] in _AUTO_HEADS for t in tags):
            if len(self._stored_tags) >= _STORED_TAGS_MAX:
                self._stored_tags.clear()
            self._stored_tags[key] = tags
        if stored and signals.entry_stored.receivers:
            signals.send(signals.entry_stored, self.app_ref(), key=key, tags=tags, ttl=expiry)
        return stored

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
        self._captures().pop(key, None)
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
        if isinstance(tags, str):
            raise TypeError("tags must be a list of strings, not a single string")
        wanted = tuple(dict.fromkeys(tags))
        for tag in wanted:
            if not isinstance(tag, str) or not tag or "\n" in tag:
                raise ValueError(f"invalid tag {tag!r}")
        if not wanted or not self.enabled:
            return ()
        if defer and self.deferrers and any(d(wanted) for d in self.deferrers):
            self.metrics.incr("deferred_invalidations", len(wanted))
            return ()
        if self.tracing is not None:
            with self.tracing.invalidation(wanted, source) as span:
                delivered = self._deliver(wanted)
                tracing.set_result(span, "sent" if delivered else "backend error")
        else:
            self._deliver(wanted)
        self.metrics.incr("invalidations", len(wanted))
        if signals.tags_invalidated.receivers:
            signals.send(signals.tags_invalidated, self.app_ref(), tags=wanted, source=source)
        return wanted

    def _deliver(self, tags: tuple[str, ...]) -> bool:
        try:
            self.backend.invalidate(tags)
        except BackendError as exc:
            self.report_error("invalidation", exc)
            return False
        return True

    def clear(self) -> int:
        """Remove everything under this app's prefix (raises BackendError if unreachable)."""
        self.forget_captures()
        return self.backend.clear()
