"""The store's hooks: what other parts (the session tracker, ``cache.disabled()``, the
debug recorder) plug into every read, fill, wait and invalidation, and the questions the
store asks them.

:class:`StoreHooks` is the typed set of hook lists a :class:`~.store.CacheStore` is built
on (the store *is* its hooks, so ``store.bypass_checks.append(...)`` and the hit path's
``if store.bypass_checks`` stay one attribute read). Who installs what:

* the tracker (``tracking/snapshot.py``): ``bypass_checks`` (uncommitted changes, the
  snapshot rule), ``fill_checks``, ``deferrers``, ``wait_checks``, ``handovers``,
  ``capture_starters``;
* ``disabling.py``: a ``bypass_checks`` hook for ``cache.disabled()`` blocks;
* the debug panel's recorder (``debug/recorder.py``): ``lookup_log``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import lookups, readcapture
from .reasons import BYPASS_HOOK

__all__ = ["StoreHooks"]


@dataclass(eq=False)
class StoreHooks:
    """The hook lists of one store, and the store's questions to them."""

    #: Each returns why this thread must skip the cache (a reason string, or True for
    #: :data:`~.reasons.BYPASS_HOOK`), or a false value; the first reason found is the one told.
    bypass_checks: list[Callable[[], str | bool | None]] = field(default_factory=list)
    #: Callables that may take tags to invalidate later (at commit); True if taken.
    deferrers: list[Callable[[tuple[str, ...]], bool]] = field(default_factory=list)
    #: Callables given the version tokens a fill would be stamped with; True drops the
    #: fill (the tracker's snapshot rule: the value may predate one of those tokens).
    fill_checks: list[Callable[[Sequence[str]], bool]] = field(default_factory=list)
    #: Called at the end of work another thread did for this one (an async view in
    #: asgiref's loop thread), in that thread: each returns a function the waiting
    #: thread runs to take over what the worker held (the tracker's open sessions),
    #: so its bypass, fill and deferral checks see them.
    handovers: list[Callable[[], Callable[[], None]]] = field(default_factory=list)
    #: Callables returning True when this thread must not wait for another's
    #: computation of a key (single flight, a lock): it holds what that computation
    #: may need (the tracker: an open SQLite transaction). It computes instead.
    wait_checks: list[Callable[[], bool]] = field(default_factory=list)
    #: Called with each new :class:`~.readcapture.ReadCapture` of this store, in the
    #: computing thread, before the computation runs (the tracker: what this thread's
    #: sessions hold in memory must be read again, or the capture refuses).
    capture_starters: list[Callable[[readcapture.ReadCapture], None]] = field(default_factory=list)
    #: The lookup log of the request being recorded (the debug panel, ``lookups.py``),
    #: or None; set by the recorder, None when no recorder watches this app: then
    #: ``get``, ``get_or_set`` and memoized calls pay this one attribute check.
    lookup_log: Callable[[], lookups.LookupLog | None] | None = None

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

    def must_not_wait(self) -> bool:
        """True when this thread must compute a missing key rather than wait for another
        thread or process computing it (a ``wait_checks`` hook says so)."""
        for check in self.wait_checks:  # noqa: SIM110
            if check():
                return True
        return False
