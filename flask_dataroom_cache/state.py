"""Typed per-app state: what one app's cache owns, kept at ``app.extensions[EXTENSION_KEY]``.

``DataRoomCache.init_app`` builds one :class:`CacheState` per app; the view, tracking and
metrics modules fill in their own field when they install themselves; :func:`state_of`
finds an app's (or says ``init_app`` has not run on it). Nothing here holds cache logic,
and nothing is kept at module level: two apps in one process never share a backend, a
counter, a tracker or a single flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from .config import Settings
from .metrics import Metrics
from .store import CacheStore

if TYPE_CHECKING:
    from .extension import DataRoomCache
    from .metrics import StatsPublisher
    from .tracking import Tracker
    from .views import ViewState

__all__ = ["EXTENSION_KEY", "CacheState", "state_of"]

#: The key of an app's :class:`CacheState` in ``app.extensions``.
EXTENSION_KEY = "dataroom_cache"


@dataclass
class CacheState:
    """Everything one app's cache owns, found at ``app.extensions["dataroom_cache"]``."""

    extension: DataRoomCache
    settings: Settings
    store: CacheStore
    metrics: Metrics
    #: The session/engine tracker (``tracking.install``).
    tracker: Tracker | None = None
    #: The decorator's single flights, key memo and warnings (``views.install``).
    views: ViewState | None = None
    #: An identity function for this app only, overriding ``@cache.identity``.
    identity: Callable[[], Any] | None = None
    #: Publishes this process's stats to Redis (``metrics.install``; Redis only).
    stats_publisher: StatsPublisher | None = None
    #: This app's own Prometheus registry, made by the first ``prometheus_registry()``.
    prometheus_registry: Any = None
    #: How to undo each step of ``init_app``, in the order they were installed.
    detachers: list[Callable[[], None]] = field(default_factory=list)

    def on_uninstall(self, detach: Callable[[], None] | None) -> None:
        """Remember how to undo one installed listener, hook or patch (None: nothing)."""
        if detach is not None:
            self.detachers.append(detach)

    def run_uninstall(self) -> None:
        """Undo every installed step, last first; every one runs even if another raises."""
        error: BaseException | None = None
        while self.detachers:
            try:
                self.detachers.pop()()
            except BaseException as exc:  # undo the others, then raise the first
                if error is None:
                    error = exc
        if error is not None:
            raise error

    def stats(self) -> dict[str, Any]:
        """Counters, hit ratio and backend state, as a plain dict (see metrics.build_stats)."""
        from .metrics import build_stats

        return build_stats(self)


def state_of(app: Flask | None = None) -> CacheState:
    """The :class:`CacheState` of ``app`` (default: ``current_app``); a ``RuntimeError``
    saying what to do when ``init_app`` has not run on it (``DataRoomCache.state``)."""
    target = app if app is not None else current_app
    try:
        state: CacheState = target.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "DataRoomCache is not initialised on this app: call cache.init_app(app)"
        ) from None
    return state
