"""Transaction-aware invalidation from SQLAlchemy session and engine events.

``init_app`` calls :func:`install`: one :class:`Tracker` per app, kept in
``CacheState.tracker``, attached to the app's Flask-SQLAlchemy session factory and engines
(or, with ``cache.track_session``, to any sessionmaker / scoped_session / Session and
engine). :func:`detach` removes every listener and patch it installed.

A write, step by step (``docs/transactions.md`` tells the story), each step one module::

    session.py      session events: the transaction's lifecycle, bulk ORM statements
    flush.py        flushed objects -> tags (the model rules, ``rules.py``)
    statements.py   bulk ORM / Core DML -> tags, before the statement runs
    cascades.py     rows the database deletes or changes itself (ON DELETE ...)
    associations.py which tables are many-to-many association tables, what they link
    links.py        association rows -> tags of both rows each one links
    textual.py      textual SQL: a write to which tracked tables
    ddl.py          schema changes (DDL): the namespace epoch after they commit
    rows.py         the tracked tables, and the tags of rows given as values
    autorows.py     automatic tags (issue 17): rows of any table -> ~t/~r/~c/~e, the bound
    autoflush.py    flushed objects of any mapped class -> automatic tags
    autostatements.py  Core and ORM DML -> automatic tags (rows read on their bind)
    autocascades.py rows the database cascades to, any table -> automatic tags
    core.py         engine events: Core statements -> tags, routed to session or connection
    connection.py   engine events: a connection's transactions, the per-connection record
    commit_hook.py  dialect.do_commit wrapped: tags go out right after the DBAPI COMMIT
    pending.py      tags per open (sub)transaction: release merges, rollback drops
    delivery.py     the one path committed tags take to the store
    capture.py      automatic read dependencies: statements -> reads (``reads.py``,
                    ``textreads.py``), what sessions hold in memory
    snapshot.py     the store hooks: bypass, fill refusal, deferred invalidate_tags
    sqlexpr.py      the only reader of SQLAlchemy's private attributes

Nothing is kept at module level except the commit hook's per-dialect wrapper (shared by
the trackers of one engine, removed with the last of them): two apps in one process
never share a tracker, and listeners go on session *factories* and engines, never on the
global ``Session`` class.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import current_app, has_app_context
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from ..rules import Registry
from ..state import EXTENSION_KEY
from .asyncsessions import sync_engines, sync_target
from .autoflush import AutoFlush
from .autorows import AutoWrites
from .autostatements import AutoStatements
from .capture import ReadListener
from .cascades import CascadeGraph
from .connection import ConnectionEvents
from .core import CoreStatements
from .delivery import Delivery
from .rows import BULK_ROW_CAP, TrackedTables
from .session import SessionEvents, SessionState
from .snapshot import SnapshotRules, ThreadSessions, backend_nonces
from .sqlexpr import app_engines

if TYPE_CHECKING:
    from flask import Flask

    from ..extension import DataRoomCache
    from ..state import CacheState

__all__ = ["BULK_ROW_CAP", "Tracker", "detach", "install", "registry_of", "tracker_for"]


def registry_of(ext: DataRoomCache) -> Registry:
    """The model rules of one extension object (shared by all its apps)."""
    return ext.rules


def tracker_for(ext: DataRoomCache, app: Flask | None = None) -> Tracker:
    """The tracker of ``app``, else of the current app, else of the last app initialised."""
    if app is None and has_app_context():
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app is not None:
        state: CacheState | None = app.extensions.get(EXTENSION_KEY)
        if state is None or state.tracker is None:
            raise RuntimeError("DataRoomCache is not initialised on this app")
        return state.tracker
    ref = ext._last_tracker
    found = ref() if ref is not None else None
    if found is None:
        raise RuntimeError("call cache.init_app(app) before track_session(), or pass app=")
    return found


def install(app: Flask, state: CacheState) -> Tracker:
    """Called by ``init_app``: build the app's tracker, attach to Flask-SQLAlchemy.

    If Flask-SQLAlchemy is initialised on the app later (``cache.init_app`` first), the
    tracker attaches on the next app context push, before any session of it is used.
    """
    tracker = Tracker(app, state, registry_of(state.extension))
    state.tracker = tracker
    state.extension._last_tracker = weakref.ref(tracker)
    if not tracker.attach_flask_sqlalchemy():
        tracker.attach_flask_sqlalchemy_later()
    return tracker


def detach(state: CacheState) -> None:
    """Undo :func:`install` (``DataRoomCache.uninstall``): every listener the app's tracker
    put on session factories and engines is removed, each patched ``dialect.do_commit`` is
    restored (once no other tracker uses it), the store hooks and the late attach hook
    are disconnected. Other apps and engines in the process are untouched."""
    tracker = state.tracker
    if tracker is None:
        return
    tracker.detach()
    state.tracker = None
    ext = state.extension
    if ext._last_tracker is not None and ext._last_tracker() is tracker:
        ext._last_tracker = None


class Tracker:
    """One app's tracking: owns its per-app objects and wires their listeners."""

    def __init__(self, app: Flask, state: CacheState, registry: Registry) -> None:
        self.app_ref = weakref.ref(app)
        self.store = state.store
        self.registry = registry
        #: Where this tracker's state lives in ``session.info`` and ``connection.info``.
        self.key = f"dataroom_cache.tracker.{id(self)}"
        self.tables = TrackedTables(registry)
        self.cascades = CascadeGraph(self.tables)
        self.threads = ThreadSessions()
        self.snapshot = SnapshotRules(
            registry,
            self.threads,
            self.store.settings.snapshot_clock_skew_ms / 1000.0,
            backend_nonces(self.store.backend),
        )
        settings = self.store.settings
        #: Automatic tags of written rows (issue 17); None when ``CACHE_AUTO_TAGS`` is off.
        self.auto: AutoWrites | None = None
        auto_flush = auto_statements = None
        if settings.auto_tags:
            self.auto = AutoWrites(state.extension.value_columns, settings.auto_tags_max_rows)
            auto_flush = AutoFlush(self.auto)
            auto_statements = AutoStatements(self.auto)
        self.delivery = Delivery(
            self.store, self.snapshot, self.auto.bounded if self.auto is not None else None
        )
        owners: weakref.WeakKeyDictionary[Connection, SessionState] = weakref.WeakKeyDictionary()
        #: Session factories listened on (kept alive until detached), and engines.
        self._targets: list[Any] = []
        #: Undoes what attaching changed on an ``async_sessionmaker`` (``asyncsessions``).
        self._undo: list[Callable[[], None]] = []
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self.session_events = SessionEvents(
            key=self.key,
            app_ref=self.app_ref,
            registry=registry,
            tables=self.tables,
            cascades=self.cascades,
            threads=self.threads,
            rules=self.snapshot,
            delivery=self.delivery,
            owners=owners,
            engines=self._engines,
            attach_engine=self.attach_engine,
            auto_flush=auto_flush,
            auto_statements=auto_statements,
        )
        self.core_statements = CoreStatements(
            key=self.key,
            registry=registry,
            tables=self.tables,
            cascades=self.cascades,
            threads=self.threads,
            delivery=self.delivery,
            owners=owners,
            auto=auto_statements,
        )
        self.connection_events = ConnectionEvents(
            key=self.key, delivery=self.delivery, owners=owners
        )
        #: The read side of automatic dependencies (``capture.py``).
        self.reads = ReadListener(self.store, state.extension.value_columns, self.threads)
        self._late_hook: Any = None
        self.store.capture_starters.append(self.reads.on_capture_start)
        self.store.bypass_checks.append(self.snapshot.must_bypass)
        self.store.deferrers.append(self.snapshot.defer)
        self.store.fill_checks.append(self.snapshot.refuse_fill)
        self.store.handovers.append(self.threads.hand_over)
        self.store.wait_checks.append(self.snapshot.must_not_wait)

    # -- attaching ------------------------------------------------------------------------------
    def attach_flask_sqlalchemy(self) -> bool:
        """Attach to the app's Flask-SQLAlchemy session and engines; False if it has none."""
        app = self.app_ref()
        if app is None:
            return False
        db = app.extensions.get("sqlalchemy")
        if db is None:
            return False
        engines = app_engines(db, app)
        if not engines:
            with app.app_context():
                engines = list(db.engines.values())
        self.attach(db.session, engines)
        return True

    def attach_flask_sqlalchemy_later(self) -> None:
        """Attach at the next app context push (Flask-SQLAlchemy initialised after us)."""
        from flask import appcontext_pushed

        app = self.app_ref()

        def late(sender: Any, **_kw: Any) -> None:
            if self.attach_flask_sqlalchemy():
                appcontext_pushed.disconnect(late)
                self._late_hook = None

        self._late_hook = late  # keep a reference (and disconnect it on detach)
        appcontext_pushed.connect(late, sender=app, weak=False)

    def attach(self, target: Any, engines: Iterable[Any] = ()) -> None:
        """Listen on a sessionmaker / scoped_session / Session (not the Session class), or
        their asyncio twins (through the sync objects they wrap: ``asyncsessions``)."""
        found = sync_target(target)
        if found.undo is not None:
            self._undo.append(found.undo)
        target = found.target
        engines = [*sync_engines(engines), *found.engines]
        if isinstance(target, scoped_session):
            target = target.session_factory
        if isinstance(target, type):
            raise TypeError(
                "track_session() takes a sessionmaker, scoped_session or Session instance, "
                "not a class: listening on a class would track every app in the process"
            )
        if not isinstance(target, sessionmaker | Session):
            raise TypeError(f"cannot track {target!r}")
        bind = target.kw.get("bind") if isinstance(target, sessionmaker) else target.bind
        if isinstance(bind, Engine):
            engines.append(bind)
        for engine in engines:
            self.attach_engine(engine)
        if any(t is target for t in self._targets):
            return
        self._targets.append(target)
        self.session_events.attach(target)

    def attach_engine(self, engine: Engine) -> None:
        """Listen on an engine's statements and transactions (once per engine)."""
        if engine in self._engines:
            return
        self._engines.add(engine)
        self.core_statements.attach(engine)
        self.connection_events.attach(engine)
        self.reads.attach(engine)

    def backend_replaced(self) -> None:
        """The store's backend was replaced (``testing.fresh_memory_cache``): the tokens
        its new backend makes are this process's own (the snapshot rule's nonces)."""
        self.snapshot.own_nonces = backend_nonces(self.store.backend)

    # -- detaching -------------------------------------------------------------------------------
    def detach(self) -> None:
        """Remove every listener, patch and hook this tracker installed."""
        hook, self._late_hook = self._late_hook, None
        if hook is not None:
            from flask import appcontext_pushed

            appcontext_pushed.disconnect(hook)
        for target in self._targets:
            self.session_events.detach(target)
        self._targets.clear()
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        for engine in list(self._engines):
            self.core_statements.detach(engine)
            self.connection_events.detach(engine)
        self._engines.clear()
        self.reads.detach()
        if self.reads.on_capture_start in self.store.capture_starters:
            self.store.capture_starters.remove(self.reads.on_capture_start)
        for hooks, check in (
            (self.store.bypass_checks, self.snapshot.must_bypass),
            (self.store.deferrers, self.snapshot.defer),
            (self.store.fill_checks, self.snapshot.refuse_fill),
            (self.store.handovers, self.threads.hand_over),
            (self.store.wait_checks, self.snapshot.must_not_wait),
        ):
            if check in hooks:
                hooks.remove(check)  # type: ignore[arg-type]
