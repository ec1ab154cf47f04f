"""The extension's blinker signals: what the cache did, for receivers outside it.

As Flask and Flask-SQLAlchemy do, the signals live in one :class:`blinker.Namespace`, and
each is sent with the Flask **app** as sender, so ``signal.connect(fn, sender=app)`` listens
to one app only (the app itself: blinker keys senders by identity, so connect with
``current_app._get_current_object()``, never the ``current_app`` proxy; the library's own
connections unwrap proxies with :func:`real_app`). Receivers run synchronously in the
thread that did the work, each on its own: a receiver that raises is logged (at most once
a minute per receiver) and never fails the request or the commit, nor keeps the
receivers after it from being called (blinker's own ``send`` stops at the first
exception).

Sending costs nothing when no receiver is connected: every send site first checks
``signal.receivers`` (a dict lookup), so the hit path pays one attribute read.

==========================  ==============================================================
Signal                      Sent with (keyword arguments)
==========================  ==============================================================
``tags_invalidated``        ``tags`` (tuple of str, in the order sent), ``source``: what
                            produced them (``"commit"``: a COMMIT, of a session or of a
                            Core connection; ``"autocommit"``: a statement on an
                            AUTOCOMMIT connection; ``"ddl"``: DDL that committed itself;
                            ``"api"``: ``cache.invalidate_tags``, ``invalidate_cache``,
                            ``invalidate_all``).
                            After the backend was asked to invalidate them (for CDN
                            purges and audit logs); never with ``CACHE_ENABLED=False``
                            (nothing is delivered: docs/signals.md).
``entry_stored``            ``key``, ``tags`` (the entry's tags), ``ttl``: an entry was
                            stored.
``cache_bypassed``          ``key`` (or None before it is built), ``reason``: a lookup
                            or a fill was skipped, and why: a request answered with
                            ``X-Cache: BYPASS`` (``views.policy.BYPASS_REASONS``), a
                            miss not stored (the ``views.policy`` refusal reasons,
                            counted in ``ViewState.refusals``), a store call skipped
                            (``store.DISABLED``, ``UNCOMMITTED``, ``SNAPSHOT``); each
                            is counted in the ``bypasses`` stat or the refusals.
``backend_state_changed``   ``state`` (``"open"``: the breaker opened, reads go to the
                            database; ``"closed"``: the backend is back), ``error`` (str or
                            None). Sent by the thread that saw it (a request, or the
                            background prober); not for a backend unreachable at start.
==========================  ==============================================================
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from typing import Any

from blinker import NamedSignal, Namespace

__all__ = [
    "backend_state_changed",
    "cache_bypassed",
    "entry_stored",
    "real_app",
    "send",
    "signals",
    "tags_invalidated",
]

log = logging.getLogger("flask_dataroom_cache")

signals = Namespace()

tags_invalidated = signals.signal("dataroom-cache.tags-invalidated")
entry_stored = signals.signal("dataroom-cache.entry-stored")
cache_bypassed = signals.signal("dataroom-cache.cache-bypassed")
backend_state_changed = signals.signal("dataroom-cache.backend-state-changed")

#: Seconds between two logs of one receiver's failures (it may raise at every send).
FAILURE_LOG_INTERVAL = 60.0


class _FailureLog:
    """When each failing receiver was last logged, by signal and receiver name (bounded by
    the receivers the code defines: closures of one function share their name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}

    def due(self, signal_name: str, receiver_name: str) -> bool:
        now = time.monotonic()
        key = (signal_name, receiver_name)
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < FAILURE_LOG_INTERVAL:
                return False
            self._last[key] = now
            return True


_failures = _FailureLog()


def _name_of(receiver: Any) -> str:
    func = getattr(receiver, "func", receiver)  # functools.partial: the function's name
    module = getattr(func, "__module__", None) or type(func).__module__
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{name}"


def real_app(app: Any) -> Any:
    """The app behind ``app`` when it is a proxy (``current_app``), else ``app``: blinker
    keys senders by ``id()``, and a proxy's is not its app's."""
    unwrap = getattr(app, "_get_current_object", None)
    return unwrap() if callable(unwrap) else app


def send(signal: NamedSignal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal`` if anyone listens: each receiver is called on its own, and one that
    raises is logged (at most once a minute per receiver) and skipped, the others still
    called. Callers check ``signal.receivers`` first on hot paths."""
    if not signal.receivers or sender is None or signal.is_muted:
        return
    for receiver in signal.receivers_for(sender):
        try:
            if inspect.iscoroutinefunction(receiver):
                raise TypeError(
                    "a coroutine function cannot receive the cache's signals: they are "
                    "sent synchronously, in the thread that did the work"
                )
            receiver(sender, **kwargs)
        except Exception:
            name = _name_of(receiver)
            if _failures.due(signal.name, name):
                log.exception(
                    "dataroom cache: receiver %s of %s raised; ignored (the other receivers "
                    "were called; logged at most once a minute per receiver)",
                    name,
                    signal.name,
                )
