"""The extension's blinker signals: what the cache did, for receivers outside it.

As Flask and Flask-SQLAlchemy do, the signals live in one :class:`blinker.Namespace`, and
each is sent with the Flask **app** as sender, so ``signal.connect(fn, sender=app)`` listens
to one app only. Receivers run synchronously in the thread that did the work; a receiver
that raises is logged and never fails the request or the commit (cache trouble never
breaks a request, and neither does an observer's).

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
                            purges and audit logs).
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

import logging
from typing import Any

from blinker import NamedSignal, Namespace

__all__ = [
    "backend_state_changed",
    "cache_bypassed",
    "entry_stored",
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

_failed_receivers: set[str] = set()


def send(signal: NamedSignal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal`` if anyone listens; a receiver's exception is logged (once per
    signal) and swallowed. Callers check ``signal.receivers`` first on hot paths."""
    if not signal.receivers or sender is None:
        return
    try:
        signal.send(sender, **kwargs)
    except Exception:
        if signal.name not in _failed_receivers:
            _failed_receivers.add(signal.name)
            log.exception("dataroom cache: a receiver of %s raised; ignored", signal.name)
