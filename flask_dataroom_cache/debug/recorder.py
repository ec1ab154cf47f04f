"""What the cache did during one request, recorded for the debug panel (no toolbar import).

:func:`start` puts a :class:`RequestLog` in the request's WSGI environ (under
``lookups.RECORDER_KEY``, where the cached views, and through the store's ``lookup_log``
hook ``cache_get``, ``get_or_set`` and memoized functions, append their lookups); the signal
receivers :func:`install` connects, with the app as sender, append to the log of the
request being handled, if it has one and it is the sender's: entries stored
(``entry_stored``), lookups and fills skipped (``cache_bypassed``), tags invalidated
(``tags_invalidated``, e.g. by the request's commits). A request without a log records
nothing, and a request of one app records nothing another app's cache does (a view of one
app writing to another's cache): the log lives in the request and names its app, never at
module level.

:func:`backend_rows` describes the app's backend as it stands (no I/O): its name, prefix,
breaker state and counters, and the near cache (L1) when there is one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, has_request_context, request

from .. import signals
from ..lookups import RECORDER_KEY, LookupLog
from ..metrics import backend_stats
from ..state import EXTENSION_KEY, CacheState

__all__ = [
    "Invalidation",
    "RequestLog",
    "Skip",
    "StoredEntry",
    "backend_rows",
    "install",
    "start",
]


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry written during the request (``entry_stored``)."""

    key: str
    tags: tuple[str, ...]
    ttl: int


@dataclass(frozen=True, slots=True)
class Skip:
    """A lookup or fill skipped (``cache_bypassed``)."""

    key: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Invalidation:
    """Tags delivered during the request (``tags_invalidated``) and what sent them."""

    tags: tuple[str, ...]
    source: str


@dataclass
class RequestLog(LookupLog):
    """Everything the cache did during one request (the lookups: ``LookupLog``)."""

    #: The app handling the request: only its cache's signals are recorded.
    app: Flask | None = None
    stored: list[StoredEntry] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    invalidations: list[Invalidation] = field(default_factory=list)


def start(app: Flask, environ: dict[str, Any]) -> RequestLog:
    """Record the request of ``app`` whose WSGI environ this is; returns its (empty) log.

    The first recorded request also sets the app's store's ``lookup_log`` hook, so the
    lookups the store's callers make (``cache_get``, ``get_or_set``, ``aget_or_set``,
    ``@cache.memoize``) are logged too (the views find the log in the environ)."""
    log = RequestLog(app=app)
    environ[RECORDER_KEY] = log
    state: CacheState | None = app.extensions.get(EXTENSION_KEY)
    if state is not None and state.store.lookup_log is None:
        state.store.lookup_log = functools.partial(_current, app)
    return log


def _current(sender: Any) -> RequestLog | None:
    """The log of the request being handled, if it records ``sender``'s cache."""
    if not has_request_context():
        return None  # a background thread (the breaker's prober), a CLI command
    log = request.environ.get(RECORDER_KEY)
    return log if isinstance(log, RequestLog) and log.app is sender else None


def _stored(sender: Any, key: str, tags: tuple[str, ...], ttl: int, **_: Any) -> None:
    log = _current(sender)
    if log is not None:
        log.stored.append(StoredEntry(key, tuple(tags), ttl))


def _bypassed(sender: Any, key: str | None, reason: str, **_: Any) -> None:
    log = _current(sender)
    if log is not None:
        log.skipped.append(Skip(key, reason))


def _invalidated(sender: Any, tags: tuple[str, ...], source: str, **_: Any) -> None:
    log = _current(sender)
    if log is not None:
        log.invalidations.append(Invalidation(tuple(tags), source))


_RECEIVERS: tuple[tuple[Any, Callable[..., None]], ...] = (
    (signals.entry_stored, _stored),
    (signals.cache_bypassed, _bypassed),
    (signals.tags_invalidated, _invalidated),
)


def install(app: Flask) -> Callable[[], None]:
    """Connect the receivers for ``app`` (its sends only; connecting again is a no-op);
    returns the function that disconnects them."""
    # One receiver object per app, disconnected whole: blinker's disconnect(receiver,
    # sender=app) leaves the receiver in ``signal.receivers`` (the send sites' fast check).
    app = signals.real_app(app)  # blinker keys senders by identity: never a proxy
    connected = [(signal, functools.partial(receiver)) for signal, receiver in _RECEIVERS]
    for signal, receiver in connected:
        signal.connect(receiver, sender=app, weak=False)

    def detach() -> None:
        for signal, receiver in connected:
            signal.disconnect(receiver)
        state: CacheState | None = app.extensions.get(EXTENSION_KEY)
        if state is not None:
            state.store.lookup_log = None

    return detach


def backend_rows(app: Flask) -> list[tuple[str, str]]:
    """``(label, value)`` rows describing ``app``'s backend now, without I/O."""
    state: CacheState | None = app.extensions.get(EXTENSION_KEY)
    if state is None:
        return [("extension", "DataRoomCache is not initialised on this app")]
    info = backend_stats(state)
    rows = [
        ("backend", str(info["name"])),
        ("key prefix", str(info["prefix"])),
        ("enabled", "yes" if info["enabled"] else "no (CACHE_ENABLED is off)"),
        ("breaker", str(info["breaker"])),
    ]
    for label, name in (
        ("consecutive failures", "consecutive_failures"),
        ("errors", "errors"),
        ("times opened", "times_opened"),
        ("pending invalidations", "pending_invalidations"),
        ("fallback", "fallback"),
        ("fallback serves", "fallback_serves"),
    ):
        if name in info:
            rows.append((label, "none" if info[name] is None else str(info[name])))
    backend = state.store.backend
    near: Any = getattr(backend, "primary", backend)
    if hasattr(near, "l1_active"):  # backends/near: NearCache
        rows += [
            ("near cache (L1)", "serving" if near.l1_active else "bypassed (not subscribed)"),
            ("L1 size", f"max {near.max_entries} entries, TTL {near.ttl}s"),
            ("L1 hits", str(near.l1_hits)),
        ]
    else:
        rows.append(("near cache (L1)", "off"))
    return rows
