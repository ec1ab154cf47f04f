"""``DataRoomCache``: the Flask extension object. It wires; it holds no cache logic.

``init_app`` reads :class:`Settings`, builds the backend, the store and the counters, and
keeps them in ``app.extensions["dataroom_cache"]`` as a :class:`CacheState`. One
``DataRoomCache`` may serve several apps; nothing is kept at module level, so two apps in
one process never share a backend, a counter or a tracked session.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from flask import Flask, current_app

from . import coexistence, signals, tracing
from .apphooks import remove_app_hook
from .autotags import ValueColumns
from .backends.factory import create_backend
from .config import ConfigError, Settings
from .customtypes import Codec
from .disabling import Disabler
from .metrics import Metrics, multiprocess
from .rules import Registry
from .state import EXTENSION_KEY, CacheState, state_of
from .store import CacheStore

if TYPE_CHECKING:
    from .inspection import EntryReport
    from .memoize import Memoized
    from .tracking import Tracker

__all__ = ["EXTENSION_KEY", "CacheState", "DataRoomCache"]

log = logging.getLogger("flask_dataroom_cache")
T = TypeVar("T")
P = ParamSpec("P")
F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


class DataRoomCache:
    """Flask extension: ``cache = DataRoomCache(); cache.init_app(app)``."""

    def __init__(self, app: Flask | None = None) -> None:
        #: The model declarations (``track``), shared by every app of this object.
        self.rules = Registry()
        #: Which columns give column-value tags (``~c:``) to automatic dependencies:
        #: foreign keys + ``index_columns`` declarations (``autotags.py``), shared by
        #: the read side and the write side of every app of this object.
        self.value_columns = ValueColumns()
        #: The custom types its apps cache (``register_type``), shared by every app of
        #: this object; another ``DataRoomCache`` has its own.
        self.codec = Codec()
        #: Registered with ``@cache.identity`` (views/identity.py); per app:
        #: ``CacheState.identity``.
        self._identity_fn: Callable[[], Any] | None = None
        #: ``@cache.warmer`` functions by name, in registration order (``flask dataroom-cache
        #: warm``), shared by every app of this object.
        self.warmers: dict[str, Callable[[], Any]] = {}
        #: The tracker of the app initialised last (``track_session`` outside a context).
        self._last_tracker: weakref.ref[Tracker] | None = None
        #: ``disabled()`` blocks (disabling.py), for every app of this object.
        self._disabler = Disabler()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate config (``ConfigError`` names the bad key), build and register state."""
        app = signals.real_app(app)  # current_app: the app (senders, weak refs, hooks)
        # Flask-Caching registers itself as app.extensions["cache"] (flask_caching init_app)
        settings = Settings.from_mapping(app.config, flask_caching="cache" in app.extensions)
        for notice in settings.notices:
            log.warning(notice)
        metrics = Metrics()
        backend = create_backend(settings, on_event=metrics.backend_event)
        store = CacheStore(backend, settings, metrics, codec=self.codec)
        store.app_ref = weakref.ref(app)
        tracing.install(store, settings)
        state = CacheState(self, settings, store, metrics)
        try:  # PROMETHEUS_MULTIPROC_DIR: the counters also in its files
            multiprocess.install(app, state)
        except ConfigError:
            backend.close()
            raise
        app.extensions[EXTENSION_KEY] = state
        # Every step below registers how to undo itself (``uninstall`` runs them backwards).
        state.on_uninstall(coexistence.warn_leftover_keys(app, settings))
        state.on_uninstall(store.watch_backend())  # backend_state_changed (signals.py)
        state.on_uninstall(self._disabler.install(store))

        from . import views

        views.install(app, state)  # its teardown runs after this one (reverse order)
        state.on_uninstall(lambda: views.uninstall(app, state))

        def _end_request(_exc: BaseException | None) -> None:
            store.forget_captures()

        app.teardown_request(_end_request)
        state.on_uninstall(lambda: remove_app_hook(app.teardown_request_funcs, _end_request))

        from . import tracking  # late import: tracking imports this module for types

        tracking.install(app, state)
        state.on_uninstall(lambda: tracking.detach(state))

        from . import cli

        cli.register(app, state)
        state.on_uninstall(lambda: cli.unregister(app, state))

    def uninstall(self, app: Flask) -> None:
        """Undo :meth:`init_app` on ``app``: every listener, hook, signal receiver and
        patch it installed is removed, in reverse order (the tracker's listeners on session
        factories and engines, each engine's ``dialect.do_commit`` restored; the views'
        request hooks; the CLI group and the stats publisher), the backend is closed and
        ``app.extensions["dataroom_cache"]`` is dropped: the app is as before ``init_app``
        (its cached views raise the "not initialised" error until ``init_app`` runs again,
        e.g. with another configuration). Other apps and engines in the process are
        unaffected."""
        state: CacheState | None = app.extensions.get(EXTENSION_KEY)
        if state is None:
            return
        state.run_uninstall()
        try:
            state.store.backend.close()
        finally:
            del app.extensions[EXTENSION_KEY]

    # -- access -------------------------------------------------------------------------
    @staticmethod
    def state(app: Flask | None = None) -> CacheState:
        """The :class:`CacheState` of ``app`` (default: ``current_app``)."""
        return state_of(app)

    @property
    def store(self) -> CacheStore:
        return self.state().store

    # -- convenience, on current_app ----------------------------------------------------
    def get(self, key: str, tags: Iterable[str] | None = None, default: Any = None) -> Any:
        return self.store.get(key, tags, default)

    def set(
        self, key: str, value: Any, ttl: int | None = None, tags: Iterable[str] | None = None
    ) -> bool:
        return self.store.set(key, value, ttl, tags)

    def get_or_set(
        self,
        key: str,
        compute: Callable[[], T],
        ttl: int | None = None,
        tags: Iterable[str] | None = None,
    ) -> T:
        return self.store.get_or_set(key, compute, ttl, tags)

    async def aget_or_set(
        self,
        key: str,
        compute: Callable[[], Awaitable[T] | T],
        ttl: int | None = None,
        tags: Iterable[str] | None = None,
    ) -> T:
        """The awaitable twin of :meth:`get_or_set` (``asyncstore``, ``docs/async.md``)."""
        from .asyncstore import aget_or_set

        return await aget_or_set(self.store, key, compute, ttl, tags)

    def delete(self, key: str) -> None:
        self.store.delete(key)

    def invalidate_tags(self, *tags: str) -> None:
        self.store.invalidate(tags)

    def invalidate_all(self) -> None:
        """Invalidate every entry of this app's namespace (the epoch bump of
        ``flask dataroom-cache invalidate --all``): for test fixtures that reset the
        database while the cache (Redis) outlives it.

        Sent now; if this thread's session has uncommitted changes, sent again at their
        commit (a read in between could refill what that transaction is changing)."""
        self.store.invalidate_all()

    def stats(self) -> dict[str, Any]:
        return self.state().stats()

    def inspect(
        self,
        key: str | None = None,
        *,
        view: str | None = None,
        user: Any = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        app: Flask | None = None,
    ) -> EntryReport:
        """One entry, read-only: its size, TTL, tags (captured vs current token), what it
        holds and whether a read now serves it (``flask dataroom-cache inspect``). Give its
        ``key``, or ``view="/path?query"`` (the key a GET of that URL reads; ``user``: the
        identity to key a per-user view for). See inspection.py and docs/cli.md."""
        from .inspection import inspect_entry

        return inspect_entry(app, key, view=view, user=user, headers=headers)

    def disabled(self) -> AbstractContextManager[None]:
        """``with cache.disabled(): ...``: in this thread or task, every read misses and
        nothing is stored (``X-Cache: BYPASS``, counted as bypasses), on every app of this
        object; invalidations still happen. Nestable. No app context needed (disabling.py)."""
        return self._disabler.disabled()

    # -- custom types (flask_dataroom_cache/serialization.py) ----------------------------
    @overload
    def register_type(
        self,
        cls: C,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
        *,
        name: str | None = None,
    ) -> C: ...

    @overload
    def register_type(
        self,
        cls: None = None,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
        *,
        name: str | None = None,
    ) -> Callable[[C], C]: ...

    def register_type(
        self,
        cls: type | None = None,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
        *,
        name: str | None = None,
    ) -> Any:
        """Let values of ``cls`` be cached: ``encode(obj)`` returns data the cache can store
        (JSON data, the built-in types, other registered types), ``decode(data)`` rebuilds
        the object on a hit. Stored with ``name`` (default ``module.QualName``), unique
        in this ``DataRoomCache``. For a dataclass both functions may be left out (its
        ``__init__`` fields, and ``cls(**fields)``). Returns ``cls``, so it also decorates:
        ``@cache.register_type`` or ``@cache.register_type(name="point.v1")``.

        See docs/api.md, "Custom types".
        """
        if cls is None:
            return lambda c: self.register_type(c, encode, decode, name=name)
        self.codec.register(cls, encode, decode, name=name)
        return cls

    # -- cached views (flask_dataroom_cache/views/) -------------------------------------
    def cached(
        self,
        timeout: int | None = None,
        *,
        tags: Iterable[str] | Callable[..., Iterable[str]] | None = None,
        shared: bool = False,
        vary: Iterable[str] = (),
        unless: Callable[[], Any] | None = None,
        lock: bool = False,
        stale_while_revalidate: int = 0,
        cache_control: str | None = None,
        query: bool | Iterable[str] = True,
        lock_timeout: int | None = None,
        ignore_authorization: bool = False,
    ) -> Callable[[F], F]:
        """Cache a GET view's response, tagged, per user unless ``shared=True``.

        See :mod:`flask_dataroom_cache.views` and ``docs/decorator.md``.
        """
        from . import views

        return views.cached(
            self,
            timeout,
            tags=tags,
            shared=shared,
            vary=vary,
            unless=unless,
            lock=lock,
            stale_while_revalidate=stale_while_revalidate,
            cache_control=cache_control,
            query=query,
            lock_timeout=lock_timeout,
            ignore_authorization=ignore_authorization,
        )

    # -- memoized functions (flask_dataroom_cache/memoize/) -----------------------------
    @overload
    def memoize(self, timeout: Callable[P, T], /) -> Memoized[P, T]: ...

    @overload
    def memoize(
        self,
        timeout: int | None = None,
        *,
        tags: Iterable[str] | Callable[..., Iterable[str]] | None = None,
        lock: bool = False,
        stale_while_revalidate: int = 0,
    ) -> Callable[[Callable[P, T]], Memoized[P, T]]: ...

    def memoize(
        self,
        timeout: int | Callable[..., Any] | None = None,
        *,
        tags: Iterable[str] | Callable[..., Iterable[str]] | None = None,
        lock: bool = False,
        stale_while_revalidate: int = 0,
    ) -> Any:
        """Cache any function or method by its arguments (``@cache.memoize(...)``, or bare
        ``@cache.memoize``); the result has ``invalidate(*args, **kwargs)``,
        ``invalidate_all()`` and ``uncached(*args, **kwargs)``.

        See :mod:`flask_dataroom_cache.memoize` and ``docs/memoize.md``.
        """
        from . import memoize

        return memoize.decorator(
            self, timeout, tags=tags, lock=lock, stale_while_revalidate=stale_while_revalidate
        )

    def identity(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Decorator: register ``fn() -> user id | None`` used to key per-user views."""
        if not callable(fn):
            raise TypeError("@cache.identity decorates a function returning the user id")
        self._identity_fn = fn
        return fn

    @staticmethod
    def skip() -> None:
        """Inside a cached view: do not store this request's response."""
        from . import views

        views.skip()

    # -- tracking (flask_dataroom_cache.rules / .tracking) ------------------------------
    def index_columns(self, model_or_table: Any, *columns: str) -> None:
        """Declare columns of a model or table *indexable* for automatic dependencies
        (docs/auto-tags.md): a read by equality on one (``WHERE slug = :s``) depends on
        that value only, and a write bumps the old and new value of it. Foreign keys are
        indexable already. A name that is not a column of the table raises ``ValueError``."""
        self.value_columns.index(model_or_table, columns)

    def track(self, model: type | None = None, /, **options: Any) -> Any:
        """Declare what changes of ``model`` invalidate (see :mod:`.rules`).

        ``@cache.track(entity=..., parents={...}, members=..., list_tag=True, id_attr="id")``
        as a class decorator, or ``cache.track(Model, entity=...)`` as a plain call.
        A reserved entity name raises ``ValueError`` now; a name that is not a column
        attribute of the model raises as soon as its mapper is configured
        (:mod:`.rule_checks`).
        ``cache.track(association_table, entity=..., parents={column: type}, sides=True,
        list_tag=True)`` declares a many-to-many association ``Table`` (see
        :class:`.rules.AssociationRule`, :mod:`.tracking.links`).
        """
        return self.rules.track(model, **options)

    def track_session(self, target: Any, *, app: Flask | None = None, engines: Any = ()) -> None:
        """Track a plain SQLAlchemy ``sessionmaker`` / ``scoped_session`` / ``Session``
        (and the Core statements run on ``engines`` and on the factory's bound engine)."""
        from .tracking import tracker_for

        tracker_for(self, app).attach(target, engines)

    # -- ops: warmers and Prometheus (warmers.py, metrics/) -------------------------------
    def warmer(self, fn: Callable[[], Any] | None = None, *, name: str | None = None) -> Any:
        """Register ``fn()`` to be run by ``flask dataroom-cache warm`` in an app context.

        ``@cache.warmer`` or ``@cache.warmer(name="rooms")``; return the number of entries
        warmed (an int) to have it printed.
        """
        from .warmers import warmer

        return warmer(self, fn, name)

    def prometheus_registry(
        self, app: Flask | None = None, registry: Any = None, *, app_label: str | None = None
    ) -> Any:
        """Expose ``app``'s counters to Prometheus; returns the registry.

        Without ``registry``, the app gets its own ``CollectorRegistry`` (same one on every
        call); with one (e.g. ``prometheus_client.REGISTRY``), the app is added to a single
        collector on it, its samples labelled ``app`` (default ``app.name``) and ``prefix``,
        so several apps share a registry without clashing.
        """
        from .metrics import register_prometheus

        target = app if app is not None else current_app
        return register_prometheus(self.state(target), app_label or target.name, registry)
