"""Transaction-aware invalidation from SQLAlchemy session and engine events.

Flow (see ``docs/transactions.md``)::

    before_flush   remember, per tracked dirty/deleted object, the parent values it had
                   before this flush (history is reset by every flush) and, for deleted
                   objects, its members (before the rows are gone)
    after_flush    rules turn every flushed object (flush_context: cascades and orphans
                   included) into tags -> the pending set of the innermost open
                   savepoint, or of the root transaction
    do_orm_execute ORM update()/delete()/insert() statements -> tags from the rows the
                   WHERE matches (one SELECT) or from the parameters; type:{entity} too
    engine events  Core insert/update/delete on a tracked table: the same, into the
                   owning session's pending set, or the connection's own
    associations   DML on a many-to-many association table (the flush's own secondary
                   INSERT/DELETE, Core, a cascade reaching it): both rows each link
                   connects are tagged as updated (:mod:`.associations`)
    cascades       any DELETE (the flush's own, bulk ORM, Core) of a table the database
                   cascades from (ondelete CASCADE / SET NULL / SET DEFAULT reaching
                   tracked tables: a graph built once from the metadata): the dependent
                   rows are read before it runs, level by level, and tagged by their rules
    COMMIT         outermost commit -> the whole set is sent, once, right after the
                   first DBAPI COMMIT of the session's connections succeeded (the
                   ``do_commit`` wrapper), before SQLAlchemy dispatches ``after_commit``:
                   every ``after_commit`` listener, whenever registered, sees it done
    after_commit   savepoint released -> its set merges into the enclosing one;
                   outermost commit with no COMMIT of its own (joined to an outer
                   transaction, two-phase, no connection) -> sent now, or parked on the
                   joined connection until the outer COMMIT
    after_transaction_end  a set still attached to the ending transaction was rolled back
                   (savepoint or root): dropped

Listeners are attached to one session *factory* (Flask-SQLAlchemy's, or the one passed to
``track_session``), never to the global ``Session`` class, so other apps and engines in
the process are unaffected. All per-session state lives in ``session.info``; all
per-app state in the :class:`Tracker` kept in ``CacheState.tracker``.

Store hooks:

* ``store.deferrers``: ``invalidate_tags`` / ``invalidate_cache`` while this thread's
  tracked session has an open transaction with changes are added to that transaction's
  pending set (they follow its savepoints, commit and rollback).
* ``store.bypass_checks``: while this thread's session holds flushed, uncommitted
  tracked changes, reads bypass the cache and fills are dropped; and (snapshot rule)
  while its database transaction began before the latest commit-invalidation this
  process sent, reads and fills bypass too, because what it reads may predate that
  commit yet would be stamped with the new tag versions.
* ``store.fill_checks``: the snapshot rule across processes: a fill stamped with a tag
  token that another process made after this thread's transaction began is dropped
  (tokens carry their creation time; ``CACHE_SNAPSHOT_CLOCK_SKEW_MS`` allows for clocks).
* ``store.handovers``: an async cached view runs in asgiref's loop thread; when it ends,
  the sessions that thread tracks move to the request's thread, where the checks above run.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, SessionTransaction, scoped_session, sessionmaker
from sqlalchemy.sql import dml
from sqlalchemy.sql.elements import TextClause

from . import associations, ddl
from .backends.base import token_time
from .rules import Registry, Rule, parent_tag
from .state import EXTENSION_KEY
from .tags import EPOCH_TAG, entity_tag, list_tag, type_tag

if TYPE_CHECKING:
    from flask import Flask

    from .extension import DataRoomCache
    from .state import CacheState

__all__ = ["BULK_ROW_CAP", "Tracker", "install", "registry_of", "tracker_for"]

log = logging.getLogger("flask_dataroom_cache")

#: A bulk UPDATE/DELETE matching more rows than this bumps ``type:{entity}`` instead of
#: one ``{entity}:{id}`` per row (parent tags stay exact: read with SELECT DISTINCT).
BULK_ROW_CAP = 1000
_NO_VALUE = object()
_NO_RULE: Any = object()
#: A block comment that cannot run past its own ``*/`` (``/\*.*?\*/`` could, and a run of
#: comments then backtracks exponentially).
_COMMENT = r"/\*[^*]*\*+(?:[^/*][^*]*\*+)*/"
_LEAD = r"\s*(?:" + _COMMENT + r"\s*|--[^\n]*\n\s*)*"
#: ``EXPLAIN ANALYZE <statement>`` runs the statement (a plain EXPLAIN does not: harmless).
_EXPLAIN = r"(?:explain\s+(?:\([^)]*\)\s*|analy[sz]e\s+|verbose\s+)*)?"
_WRITE_SQL = re.compile(
    _LEAD + _EXPLAIN + r"(insert|update|delete|merge|replace|upsert)\b", re.I | re.S
)
#: A ``WITH ...`` statement that writes (PostgreSQL's data-modifying CTEs): a CTE body
#: (``AS (``) or the main statement (after a ``)``) that is a write; ``SELECT ... FOR
#: UPDATE`` is not one.
_WRITE_CTE = re.compile(
    _LEAD
    + r"with\b.*?(?:\bas\s*(?:not\s+)?(?:materialized\s*)?\(\s*|\)\s*)"
    + r"(insert|update|delete|merge)\b",
    re.I | re.S,
)
_NAME = r'(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[\w$]+)'
#: The target table of a textual INSERT/UPDATE/DELETE/REPLACE/MERGE (last name part).
_TEXT_TARGET = re.compile(
    _LEAD
    + _EXPLAIN
    + r"(?:(?:insert|replace|upsert)(?:\s+or\s+\w+)?\s+into|merge\s+into|update(?:\s+or\s+\w+)?"
    r"|delete\s+from)\s+(?:only\s+)?"
    rf"(?:{_NAME}\s*\.\s*)?({_NAME})",
    re.I | re.S,
)
#: More than one statement in one string: anything but blanks/comments after a ``;``.
_MORE_STATEMENTS = re.compile(
    r";\s*(?:" + _COMMENT + r"\s*|--[^\n]*(?:\n|$)\s*)*(?!/\*|--)[^;\s]", re.S
)
_ORM_NO_VALUE = sa.orm.base.NO_VALUE
_MISSING_VALUES = (sa.orm.base.NO_VALUE, sa.orm.base.PASSIVE_NO_RESULT, None)


def _nonces(backend: Any) -> tuple[str, ...]:
    """The token nonces of this process's backend objects (through the wrappers)."""
    found: list[str] = []
    todo, seen = [backend], set()
    while todo:
        obj = todo.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        nonce = getattr(obj, "_nonce", None)
        if isinstance(nonce, str) and nonce:
            found.append(nonce)
        todo.extend(getattr(obj, name, None) for name in ("inner", "primary", "fallback"))
    return tuple(found)


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
    from flask import appcontext_pushed

    tracker = Tracker(app, state, registry_of(state.extension))
    state.tracker = tracker
    state.extension._last_tracker = weakref.ref(tracker)
    if not tracker.attach_flask_sqlalchemy():

        def _late(sender: Any, **_kw: Any) -> None:
            if tracker.attach_flask_sqlalchemy():
                appcontext_pushed.disconnect(_late, sender=app)

        tracker._late_hook = _late  # keep a reference
        appcontext_pushed.connect(_late, sender=app, weak=False)
    return tracker


#: ``ondelete`` actions of a foreign key that change rows the statement does not name.
_ON_DELETE = {"CASCADE": "delete", "SET NULL": "null", "SET DEFAULT": "default"}
#: A database cascade deeper than this many levels stops descending: ``type:{entity}``
#: (and ``{entity}:list``) of every table still reachable stands for the rest.
CASCADE_MAX_DEPTH = 256
#: Levels selected through nested subqueries (below a level above ``BULK_ROW_CAP``) stop
#: the same way after this many, before the SQL nests too deep for the database.
CASCADE_MAX_NESTING = 8


@dataclass(frozen=True)
class _Edge:
    """A foreign key of ``child`` referencing ``parent`` with an ``ondelete`` action."""

    parent: sa.Table
    child: sa.Table
    fk_cols: tuple[sa.Column[Any], ...]  # in child
    ref_cols: tuple[sa.Column[Any], ...]  # in parent
    action: str  # "delete" (CASCADE), "null" (SET NULL), "default" (SET DEFAULT)


@dataclass
class _TableInfo:
    rule: Rule
    table: sa.Table
    id_col: sa.Column[Any] | None
    parent_cols: dict[str, sa.Column[Any]]  # attr -> column
    mapper_cache: Any = None  # the mapper's compiled cache: marks flush statements


class _SessionState:
    """One session's tracking state, for one tracker (in ``session.info``)."""

    __slots__ = (
        "__weakref__",
        "begin_seq",
        "begin_time",
        "buckets",
        "conns",
        "delivered",
        "flush_ctx",
        "flushed",
        "owned",
        "pre",
        "registered_in",
        "session_ref",
        "wrote",
    )

    def __init__(self, session: Session, owned: bool) -> None:
        self.session_ref = weakref.ref(session)
        self.owned = owned
        self.buckets: dict[SessionTransaction, set[str]] = {}
        self.pre: dict[Any, tuple[dict[str, Any] | None, list[Any] | None]] = {}
        self.flushed = False
        self.wrote = False
        self.flush_ctx: weakref.ref[Any] | None = None
        self.begin_seq: int | None = None
        self.begin_time: float | None = None
        self.conns: list[Connection] = []
        #: tags already sent at the COMMIT of one of ``conns`` (see ``_after_core_commit``);
        #: ``after_commit`` still parks them on connections joined to an outer transaction
        self.delivered: set[str] | None = None
        self.registered_in: weakref.WeakSet[_SessionState] | None = None

    def reset(self) -> None:
        self.buckets.clear()
        self.pre.clear()
        self.flushed = self.wrote = False
        self.flush_ctx = None
        self.begin_seq = None
        self.begin_time = None
        self.delivered = None


@dataclass
class _Committing:
    """A COMMIT about to run on one connection, from the ``commit`` event to the
    ``do_commit`` wrapper that delivers its tags once the DBAPI COMMIT succeeded."""

    #: what ``Connection`` hands to ``dialect.do_commit``: identifies this COMMIT
    dbapi: Any
    #: the connection's (pool record's) info dict: Core tags wait in its ``.resend`` entry
    info: dict[Any, Any]
    #: the session whose root transaction this COMMIT ends (its root set goes out too)
    session: _SessionState | None


def _current_tx(session: Session) -> SessionTransaction | None:
    """The innermost savepoint, else the root transaction."""
    return session.get_nested_transaction() or session.get_transaction()


def _enclosing(tx: SessionTransaction) -> SessionTransaction | None:
    parent = tx.parent
    while parent is not None and not parent.nested and parent.parent is not None:
        parent = parent.parent
    return parent


class Tracker:
    """Per-app tracking: listeners, pending tags, the store hooks."""

    def __init__(self, app: Flask, state: CacheState, registry: Registry) -> None:
        self.app_ref = weakref.ref(app)
        self.store = state.store
        self.registry = registry
        self.key = f"dataroom_cache.tracker.{id(self)}"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._seq = 0
        self._targets: set[int] = set()
        self._keep: list[Any] = []
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._conn_owner: weakref.WeakKeyDictionary[Connection, _SessionState] = (
            weakref.WeakKeyDictionary()
        )
        self._tables: dict[sa.Table, _TableInfo | None] = {}
        self._child_plans: dict[type, tuple[tuple[str, Rule], ...]] = {}
        self._child_version = -1
        self._bad_tag_logged = False
        self._tables_version = -1
        self._cascades: dict[sa.Table, tuple[_Edge, ...]] = {}
        self._cascade_metas: list[sa.MetaData] = []
        self._cascade_sig: tuple[int, int] | None = None
        self._associations = associations.AssociationIndex(registry)
        self._late_hook: Any = None
        self.skew = self.store.settings.snapshot_clock_skew_ms / 1000.0
        self._own_nonces = _nonces(self.store.backend)
        self.store.bypass_checks.append(self.must_bypass)
        self.store.deferrers.append(self.defer)
        fill_checks = getattr(self.store, "fill_checks", None)
        if fill_checks is not None:
            fill_checks.append(self.refuse_fill)
        self.store.handovers.append(self.hand_over)

    # -- attaching ------------------------------------------------------------------------
    def attach_flask_sqlalchemy(self) -> bool:
        app = self.app_ref()
        if app is None:
            return False
        db = app.extensions.get("sqlalchemy")
        if db is None:
            return False
        engines = list(getattr(db, "_app_engines", {}).get(app, {}).values())
        if not engines:
            with app.app_context():
                engines = list(db.engines.values())
        self.attach(db.session, engines)
        return True

    def attach(self, target: Any, engines: Iterable[Engine] = ()) -> None:
        """Listen on a sessionmaker / scoped_session / Session (not the Session class)."""
        if isinstance(target, scoped_session):
            target = target.session_factory
        if isinstance(target, type):
            raise TypeError(
                "track_session() takes a sessionmaker, scoped_session or Session instance, "
                "not a class: listening on a class would track every app in the process"
            )
        if not isinstance(target, sessionmaker | Session):
            raise TypeError(f"cannot track {target!r}")
        engines = list(engines)
        bind = target.kw.get("bind") if isinstance(target, sessionmaker) else target.bind
        if isinstance(bind, Engine):
            engines.append(bind)
        for engine in engines:
            self.attach_engine(engine)
        if id(target) in self._targets:
            return
        self._targets.add(id(target))
        self._keep.append(target)
        listen = event.listen
        listen(target, "after_transaction_create", self._on_tx_create)
        listen(target, "after_begin", self._on_begin)
        listen(target, "before_flush", self._on_before_flush)
        listen(target, "after_flush", self._on_after_flush)
        listen(target, "after_flush_postexec", self._on_flush_done)
        listen(target, "after_soft_rollback", self._on_soft_rollback)
        listen(target, "after_commit", self._on_commit)
        listen(target, "after_transaction_end", self._on_tx_end)
        listen(target, "do_orm_execute", self._on_orm_execute)

    def attach_engine(self, engine: Engine) -> None:
        if engine in self._engines:
            return
        self._engines.add(engine)
        event.listen(engine, "before_execute", self._on_core_execute)
        event.listen(engine, "after_execute", self._on_core_executed)
        # exec_driver_sql() skips before/after_execute: only the cursor events see it
        event.listen(engine, "before_cursor_execute", self._on_cursor_execute)
        event.listen(engine, "after_cursor_execute", self._on_cursor_executed)
        event.listen(engine, "commit", self._on_conn_commit)
        event.listen(engine, "commit_twophase", self._on_conn_commit_twophase)
        event.listen(engine, "savepoint", self._on_conn_savepoint)
        event.listen(engine, "rollback_savepoint", self._on_conn_rollback_savepoint)
        event.listen(engine, "release_savepoint", self._on_conn_release_savepoint)
        event.listen(engine, "rollback", self._on_conn_rollback)
        event.listen(engine, "checkin", self._on_checkin)
        # Core has no after-commit event ("commit" fires before the COMMIT): wrap this
        # engine's dialect (one per create_engine) so tags go out right after it.
        dialect = engine.dialect
        orig = dialect.do_commit
        tracker_ref = weakref.ref(self)

        def do_commit(dbapi_connection: Any) -> None:
            tracker = tracker_ref()
            try:
                orig(dbapi_connection)
            except BaseException:
                if tracker is not None:
                    tracker._local.committing = None  # failed: nothing to send now
                raise
            if tracker is not None:
                tracker._after_core_commit(dbapi_connection)

        dialect.do_commit = do_commit  # type: ignore[method-assign]

    # -- per-session state --------------------------------------------------------------------
    def _state(self, session: Session) -> _SessionState:
        st: _SessionState | None = session.info.get(self.key)
        if st is None:
            st = _SessionState(session, self._owns(session))
            session.info[self.key] = st
        return st

    def _owns(self, session: Session) -> bool:
        """False for a session of another app sharing the same Flask-SQLAlchemy object.

        Only Flask-SQLAlchemy's sessions (they carry their ``SQLAlchemy`` object) are
        shared between apps; a factory passed to ``track_session`` belongs to this app
        whatever app context is pushed."""
        if getattr(session, "_db", None) is None or not has_app_context():
            return True
        return current_app._get_current_object() is self.app_ref()  # type: ignore[attr-defined]

    def _thread_states(self) -> weakref.WeakSet[_SessionState]:
        states: weakref.WeakSet[_SessionState] | None = getattr(self._local, "states", None)
        if states is None:
            states = self._local.states = weakref.WeakSet()
        return states

    def _adopt(self, st: _SessionState) -> None:
        """A session used by another thread than the one that began its transaction
        (handed over): its state moves to this thread's, where the bypass, fill and
        deferral checks look."""
        reg = st.registered_in
        if reg is not None and reg is not getattr(self._local, "states", None):
            reg.discard(st)
            mine = self._thread_states()
            mine.add(st)
            st.registered_in = mine

    def _bucket(self, session: Session, st: _SessionState) -> set[str] | None:
        tx = _current_tx(session)
        if tx is None:
            return None
        bucket = st.buckets.get(tx)
        if bucket is None:
            bucket = st.buckets[tx] = set()
        return bucket

    # -- session events -------------------------------------------------------------------
    def _on_tx_create(self, session: Session, tx: SessionTransaction) -> None:
        if tx.parent is not None:
            return
        st = session.info.get(self.key)
        if st is None:
            st = self._state(session)
        else:
            st.owned = self._owns(session)
            st.reset()
        if st.owned:
            reg = self._thread_states()
            reg.add(st)
            st.registered_in = reg

    def _on_begin(self, session: Session, tx: SessionTransaction, conn: Connection) -> None:
        st = self._state(session)
        if not st.owned:
            return
        engine = conn.engine
        engine = getattr(engine, "_proxied", engine)  # an OptionEngine: its base engine
        if engine not in self._engines:
            # an unbound factory (Session(bind=...) per call): Core statements through
            # this session reach the engine listeners from now on
            self.attach_engine(engine)
        if st.begin_seq is None:
            st.begin_seq = self._seq
            st.begin_time = time.time()
        self._conn_owner[conn] = st
        st.conns.append(conn)
        if conn.info.get(self.key):
            # Core statements on this connection before the session began on it: their
            # rows are uncommitted, so this session must neither fill from them nor
            # serve cached versions of them (it reads them).
            st.wrote = st.flushed = True
            if getattr(session, "join_transaction_mode", None) == "control_fully":
                # the session's COMMIT (or ROLLBACK) is theirs now: into its root
                # transaction (not a savepoint the session may have begun with). In the
                # other join modes the outer transaction keeps them and sends them.
                root = session.get_transaction()
                if root is not None:
                    st.buckets.setdefault(root, set()).update(conn.info.pop(self.key))

    def _on_before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        """Only what after_flush cannot know: members of deleted objects (before their
        rows, and their memberships, are gone) and parent values that are not loaded
        (an expired object moved through a relationship: the flush would overwrite the
        old value without recording it). Loaded parent values are read in after_flush
        from ``committed_state``, which the flush's foreign-key sync also fills."""
        st = self._state(session)
        if not st.owned or not self.registry:
            return
        self._adopt(st)
        st.flush_ctx = weakref.ref(flush_context)
        rule_for = self.registry.rule_for
        pre = st.pre
        if self.registry.has_members and session.deleted:
            with session.no_autoflush:
                for obj in session.deleted:
                    rule = rule_for(type(obj))
                    if rule is not None and rule.members is not None:
                        pre[sa.inspect(obj)] = (None, rule.member_ids(obj))
        modified = getattr(session.identity_map, "_modified", None)
        if modified is None:  # pragma: no cover - private attribute gone
            modified = [sa.inspect(o) for o in session.dirty]
        rules = self.registry.resolved
        if self._child_version != self.registry.version:
            self._child_plans.clear()
            self._child_version = self.registry.version
        plans = self._child_plans
        for state in list(modified):
            cls = state.class_
            children = plans.get(cls)
            if children is None:
                children = self._child_collections(cls)
            if children:
                self._pre_children(session, state, children, pre)
            rule = rules.get(cls, _NO_RULE)
            if rule is _NO_RULE:
                rule = rule_for(cls)
            if rule is None or not rule.parents or state.key is None:
                continue
            data = state.dict
            committed = state.committed_state
            # Not loaded (expired), or set on an expired object (expire_on_commit): the
            # ORM does not know the old value. The database still has it: read it.
            unknown = None
            for attr in rule.parents:
                if attr not in data or (committed and committed.get(attr) is _ORM_NO_VALUE):
                    if unknown is None:
                        unknown = [attr]
                    else:
                        unknown.append(attr)
            if unknown is None:
                continue  # loaded: after_flush reads the old values from committed_state
            old = self._load_old(session, state, unknown)
            prev = pre.get(state)
            pre[state] = (old, prev[1] if prev else None)

    def _child_collections(self, cls: type) -> tuple[tuple[str, Rule], ...]:
        """One-to-many relationships of ``cls`` whose children are tracked with parents:
        appending a child to (or removing it from) such a collection moves the child
        without the child itself being modified first. Cached per class."""
        plan = self._child_plans.get(cls)
        if plan is None:
            found: list[tuple[str, Rule]] = []
            try:
                mapper: Any = sa.inspect(cls)
            except sa.exc.NoInspectionAvailable:
                mapper = None
            for rel in getattr(mapper, "relationships", ()):
                if rel.direction is not sa.orm.interfaces.ONETOMANY or rel.viewonly:
                    continue
                child_rule = self.registry.rule_for(rel.mapper.class_)
                if child_rule is not None and child_rule.parents:
                    found.append((rel.key, child_rule))
            plan = self._child_plans[cls] = tuple(found)
        return plan

    def _pre_children(
        self, session: Session, state: Any, children: Any, pre: dict[Any, Any]
    ) -> None:
        """Old parent values of children added to / removed from a collection of
        ``state`` whose foreign keys are not loaded (expired): the flush's sync would
        overwrite them without recording the old value."""
        passive = sa.orm.base.PASSIVE_NO_INITIALIZE
        for key, child_rule in children:
            history = state.get_history(key, passive)
            for child in (*history.added, *history.deleted):
                cstate = sa.inspect(child)
                if cstate.key is None or cstate in pre:
                    continue
                data, committed = cstate.dict, cstate.committed_state
                unknown = [
                    a
                    for a in child_rule.parents
                    if a not in data or (committed and committed.get(a) is _ORM_NO_VALUE)
                ]
                if unknown:
                    pre[cstate] = (self._load_old(session, cstate, unknown), None)

    @staticmethod
    def _load_old(session: Session, state: Any, attrs: list[str]) -> dict[str, Any]:
        mapper = state.mapper
        cols = []
        for attr in attrs:
            prop = mapper.attrs.get(attr)
            columns = getattr(prop, "columns", None)
            if columns:
                cols.append((attr, columns[0]))
        if not cols or state.identity is None:
            return {}
        where = [c == v for c, v in zip(mapper.primary_key, state.identity, strict=True)]
        query = sa.select(*[c for _, c in cols]).where(*where)
        with session.no_autoflush:  # on the mapper's bind (its bind key), not the default one
            row = session.execute(query, bind_arguments={"mapper": mapper}).first()
        if row is None:
            return {}
        return {attr: value for (attr, _), value in zip(cols, row, strict=True)}

    def _on_after_flush(self, session: Session, flush_context: Any) -> None:
        st = self._state(session)
        if not st.owned:
            return
        self._adopt(st)
        st.wrote = True
        if not self.registry:
            return
        rule_for = self.registry.rule_for
        tags: set[str] = set()
        states = getattr(flush_context, "states", None)
        pre = st.pre
        if states is None:  # pragma: no cover - SQLAlchemy without UOWTransaction.states
            states = {sa.inspect(o): (False, False) for o in (*session.new, *session.dirty)}
            states.update({sa.inspect(o): (True, False) for o in session.deleted})
        no_value = _MISSING_VALUES
        rules = self.registry.resolved
        for state, (isdelete, listonly) in states.items():
            if listonly and not isdelete:
                continue
            cls = state.class_
            rule = rules.get(cls, _NO_RULE)
            if rule is _NO_RULE:
                rule = rule_for(cls)
            if rule is None:
                continue
            obj = None
            if rule.needs_obj:  # type: ignore[attr-defined]
                obj = state.obj()
                if obj is None:
                    continue
            if isdelete:
                kind = "delete"
            elif state.key is None:
                kind = "insert"
            else:
                kind = "update"
            old: dict[str, Any] | None = None
            members = None
            if pre:
                found = pre.get(state)
                if found is not None:
                    old, members = found
            if kind == "update":
                committed = state.committed_state
                if committed:
                    for attr in rule.history_attrs:  # type: ignore[attr-defined]
                        prev = committed.get(attr, _NO_VALUE)
                        if prev is not _NO_VALUE and prev not in no_value:
                            if old is None:
                                old = {}
                            old[attr] = prev
            rule.collect(tags, obj, kind, state.dict, old, members)
        pre.clear()
        if tags:
            bucket = self._bucket(session, st)
            if bucket is not None:
                bucket |= tags
                st.flushed = True

    def _on_flush_done(self, session: Session, flush_context: Any) -> None:
        st = session.info.get(self.key)
        if st is not None:
            st.flush_ctx = None

    def _on_soft_rollback(self, session: Session, previous: SessionTransaction) -> None:
        st = session.info.get(self.key)
        if st is not None:
            st.flush_ctx = None
            st.pre.clear()

    def _on_commit(self, session: Session) -> None:
        st: _SessionState | None = session.info.get(self.key)
        if st is None or not st.owned or not (st.buckets or st.delivered):
            return
        nested = session.get_nested_transaction()
        if nested is not None:  # a savepoint was released: keep its tags
            tags = st.buckets.pop(nested, None)
            target = _enclosing(nested)
            if tags and target is not None:
                st.buckets.setdefault(target, set()).update(tags)
            return
        root = session.get_transaction()
        tags = st.buckets.pop(root, None) if root is not None else None
        # Usually already sent, at the first COMMIT of the session's connections
        # (``_after_core_commit``): ``delivered``. Still here: no connection of the
        # session ran a COMMIT of its own (all joined, two-phase, none at all).
        delivered, st.delivered = st.delivered, None
        if tags or delivered:
            # A connection still in a transaction is joined to one the session does not
            # own (Session(bind=conn) inside conn.begin()): its data is committed by that
            # outer COMMIT, so the tags wait for it there (the Core path sends them). If
            # another bind really committed now, they go out now too (a multi-bind
            # session: over-invalidating, never late).
            joined = [c for c in st.conns if c.in_transaction()]
            for conn in joined:
                conn.info.setdefault(self.key, set()).update(tags or (), delivered or ())
            if tags and (len(joined) < len(st.conns) or not st.conns):
                self.send(tags)

    def _on_tx_end(self, session: Session, tx: SessionTransaction) -> None:
        if tx.parent is not None and not tx.nested:
            return  # a flush's subtransaction: never holds tags
        st: _SessionState | None = session.info.get(self.key)
        if st is None:
            return
        if st.buckets:
            st.buckets.pop(tx, None)  # still here: rolled back
        if tx.parent is None:
            st.reset()
            for conn in st.conns:
                self._conn_owner.pop(conn, None)
            st.conns.clear()
            if st.registered_in is not None:
                st.registered_in.discard(st)
                st.registered_in = None

    # -- delivery ---------------------------------------------------------------------------
    def send(self, tags: Iterable[str]) -> None:
        """Deliver committed tags now (bumps the commit sequence first: snapshot rule).

        Called after a COMMIT that went through, so it never raises for a bad tag (a
        ``cache_tags`` hook returning a name with a newline...): the whole namespace is
        invalidated instead, and the mistake logged once."""
        with self._lock:
            self._seq += 1
        tags = tuple(tags)
        try:
            self.store.invalidate(tags, defer=False)
        except (TypeError, ValueError) as exc:
            if not self._bad_tag_logged:
                self._bad_tag_logged = True
                log.error(
                    "dataroom cache: a commit produced an invalid tag (%s); invalidating "
                    "everything (the epoch) instead. Fix the cache_tags hook or declaration.",
                    exc,
                )
            self.store.invalidate((EPOCH_TAG,), defer=False)

    # -- store hooks ---------------------------------------------------------------------------
    def must_bypass(self) -> bool:
        states = getattr(self._local, "states", None)
        if not states:
            return False
        seq = self._seq
        for st in states:
            if st.flushed:
                return True
            if st.begin_seq is not None and st.begin_seq < seq:
                return True
            if self._unflushed(st):
                return True
        return False

    def _unflushed(self, st: _SessionState) -> bool:
        """Changes to tracked objects not flushed yet: a compute reading them from the
        session's memory (``session.get`` of a loaded object runs no SQL, so no autoflush)
        would cache a value no transaction has written. Empty collections: the usual case."""
        session = st.session_ref()
        if session is None:
            return False
        new = getattr(session, "_new", None)
        deleted = getattr(session, "_deleted", None)
        modified = getattr(session.identity_map, "_modified", None)
        if not new and not deleted and not modified:
            return False
        rule_for = self.registry.rule_for
        for group in (new, deleted, modified):
            for state in group or ():
                if rule_for(state.class_) is not None:
                    return True
        return False

    def hand_over(self) -> Callable[[], None]:
        """``store.handovers``: run in a thread that worked for another (an async view in
        asgiref's loop thread) as it ends; the other thread calls the result to adopt the
        sessions this one tracks (a flushed, uncommitted change keeps its fills out)."""
        states = list(getattr(self._local, "states", None) or ())

        def adopt() -> None:
            for st in states:
                self._adopt(st)

        return adopt

    def refuse_fill(self, versions: Sequence[str]) -> bool:
        """The snapshot rule across processes: drop a fill stamped with a token that
        another process made after this thread's open database transaction began (minus
        the allowed clock skew): the value may come from a snapshot older than the change
        the token stands for. Tokens this process made are covered exactly by the commit
        sequence (:meth:`must_bypass`), so a tag created by this very read never refuses."""
        states = getattr(self._local, "states", None)
        if not states:
            return False
        began = min((st.begin_time for st in states if st.begin_time is not None), default=None)
        if began is None:
            return False
        limit = began - self.skew - 0.001  # token times are whole milliseconds
        own = self._own_nonces
        for token in versions:
            made = token_time(token)
            if made is None or made < limit:
                continue
            rest = token.partition("-")[2]
            if own and rest.startswith(own):
                continue
            return True
        return False

    def defer(self, tags: tuple[str, ...]) -> bool:
        states = getattr(self._local, "states", None)
        if states:
            for st in states:
                session = st.session_ref()
                if session is None or not session.in_transaction():
                    continue
                has_changes = (
                    st.wrote
                    or any(st.buckets.values())
                    or bool(session.new or session.deleted or session.dirty)
                )
                if not has_changes:
                    continue
                bucket = self._bucket(session, st)
                if bucket is not None:
                    bucket.update(tags)
                    return True
        with self._lock:  # delivered now: readers with older snapshots must not fill
            self._seq += 1
        return False

    # -- bulk statements ------------------------------------------------------------------------
    def _table_info(self, table: Any) -> _TableInfo | None:
        if self._tables_version != self.registry.version:
            self._tables.clear()
            self._tables_version = self.registry.version
            for rule in self.registry.rules():
                try:
                    mapper: Any = sa.inspect(rule.model)
                except sa.exc.NoInspectionAvailable:
                    continue
                for tbl in mapper.tables:
                    self._tables.setdefault(tbl, self._info(rule, mapper, tbl))
        return self._tables.get(table)

    def _association(self, table: Any) -> associations.Association | None:
        """The association table ``table`` (declared, or detected), None for any other."""
        self._table_info(None)  # refreshes the tracked tables after a registry change
        return self._associations.get(table, self._tables)

    def _association_reader(
        self, run: Callable[[Any], Any], connection: Callable[[], Connection | None]
    ) -> associations.Reader:
        def objects(info: _TableInfo, ids: list[Any], kind: str, tags: set[str]) -> None:
            self._object_tags(info, ids, kind, connection, tags)

        return associations.Reader(run, objects)

    # -- database cascades (ON DELETE CASCADE / SET NULL / SET DEFAULT) ------------------------
    def _cascade_edges(self, table: Any) -> tuple[_Edge, ...]:
        """The ``ondelete`` foreign keys referencing ``table`` that reach tracked rows
        (directly, or through further cascades). Built once from the table metadata (again
        after a ``track()`` or a new table); empty for most tables: the hot path."""
        self._table_info(None)  # refreshes the tracked tables after a registry change
        sig = self._cascade_sig
        if (
            sig is None
            or sig[0] != self._tables_version
            or sig[1] != sum(len(md.tables) for md in self._cascade_metas)
        ):
            self._build_cascades()
        return self._cascades.get(table, ())

    def _build_cascades(self) -> None:
        tracked = {t for t, i in self._tables.items() if i is not None}
        tracked |= set(self._associations.all(self._tables))  # their rows link tracked rows
        metas = list({id(t.metadata): t.metadata for t in tracked}.values())
        edges: dict[sa.Table, list[_Edge]] = {}
        for md in metas:
            for child in md.tables.values():
                for fkc in child.foreign_key_constraints:
                    action = _ON_DELETE.get((fkc.ondelete or "").strip().upper())
                    if action is None or not fkc.elements:
                        continue
                    try:
                        refs = tuple(fk.column for fk in fkc.elements)
                    except sa.exc.SQLAlchemyError:  # unresolvable reference: no edge
                        continue
                    parent = refs[0].table
                    if not isinstance(parent, sa.Table):
                        continue
                    fks = tuple(fk.parent for fk in fkc.elements)
                    edges.setdefault(parent, []).append(_Edge(parent, child, fks, refs, action))
        # a table matters if it is tracked or its deletion cascades to one that matters
        relevant = set(tracked)
        changed = True
        while changed:
            changed = False
            for parent, found in edges.items():
                if parent not in relevant and any(
                    e.action == "delete" and e.child in relevant for e in found
                ):
                    relevant.add(parent)
                    changed = True
        cascades: dict[sa.Table, tuple[_Edge, ...]] = {}
        for parent, found in edges.items():
            kept = tuple(
                e
                for e in found
                if e.child in tracked or (e.action == "delete" and e.child in relevant)
            )
            if kept:
                cascades[parent] = kept
        self._cascades = cascades
        self._cascade_metas = metas
        self._cascade_sig = (self._tables_version, sum(len(md.tables) for md in metas))

    def _cascade_tags(
        self,
        table: sa.Table,
        cond: Any,
        run: Callable[[Any], Any],
        connection: Callable[[], Connection | None],
        tags: set[str],
    ) -> None:
        """Add the tags of every row the database itself deletes (``ON DELETE CASCADE``)
        or changes (``SET NULL`` / ``SET DEFAULT``) because the rows of ``table`` matching
        ``cond`` are deleted. Runs *before* the DELETE: one SELECT per foreign key and
        level, descending through nested rows (a folder's subfolders' files...). Above
        :data:`BULK_ROW_CAP` rows of a table at one level, ``type:{entity}`` stands for
        their entity tags (their parent tags stay exact) and the next level is selected
        through a subquery instead of by id."""
        # frontier: (table, condition on it, its deleted primary keys when known, how
        # many subqueries the condition nests)
        frontier: list[tuple[sa.Table, Any, list[Any] | None, int]] = [(table, cond, None, 0)]
        visited: dict[sa.Table, set[Any]] = {}
        depth = 0
        while frontier:
            depth += 1
            if depth > CASCADE_MAX_DEPTH:
                log.warning("database cascade deeper than %d levels: type tags", depth - 1)
                self._reachable_type_tags([f[0] for f in frontier], tags)
                return
            nxt: list[tuple[sa.Table, Any, list[Any] | None, int]] = []
            for parent, pcond, pkeys, nesting in frontier:
                if nesting > CASCADE_MAX_NESTING:
                    self._reachable_type_tags([parent], tags, include_self=False)
                    continue
                for edge in self._cascades.get(parent, ()):
                    found = self._cascade_level(edge, pcond, pkeys, run, connection, tags, visited)
                    if found is not None and edge.action == "delete":
                        ccond, ckeys = found
                        nxt.append((edge.child, ccond, ckeys, 0 if ckeys else nesting + 1))
            frontier = nxt

    def _reachable_type_tags(
        self, tables: list[sa.Table], tags: set[str], include_self: bool = True
    ) -> None:
        todo = (
            list(tables)
            if include_self
            else [e.child for t in tables for e in self._cascades.get(t, ())]
        )
        seen: set[sa.Table] = set()
        while todo:
            tbl = todo.pop()
            if tbl in seen:
                continue
            seen.add(tbl)
            info = self._tables.get(tbl)
            if info is not None:
                tags.add(type_tag(info.rule.entity))
                if info.rule.list_tag:
                    tags.add(list_tag(info.rule.entity))
            todo.extend(e.child for e in self._cascades.get(tbl, ()))

    def _cascade_level(
        self,
        edge: _Edge,
        pcond: Any,
        pkeys: list[Any] | None,
        run: Callable[[Any], Any],
        connection: Callable[[], Connection | None],
        tags: set[str],
        visited: dict[sa.Table, set[Any]],
    ) -> tuple[Any, list[Any] | None] | None:
        """Tag the rows of ``edge.child`` referencing the deleted parent rows; return the
        condition (and primary keys) of those rows for the next level, None if none."""
        child = edge.child
        info = self._tables.get(child)
        assoc = self._associations.get(child, self._tables) if info is None else None
        parent_pk = tuple(edge.parent.primary_key.columns)
        fk = edge.fk_cols[0] if len(edge.fk_cols) == 1 else sa.tuple_(*edge.fk_cols)
        conds: list[Any]
        if pkeys is not None and edge.ref_cols == parent_pk:
            values = [k[0] for k in pkeys] if len(parent_pk) == 1 else pkeys
            conds = [fk.in_(values[i : i + 500]) for i in range(0, len(values), 500)]
        else:
            conds = [fk.in_(sa.select(*edge.ref_cols).where(pcond))]
        pk = tuple(child.primary_key.columns)
        cols: list[Any] = list(pk)
        if info is not None:
            cols.extend(c for c in (info.id_col, *info.parent_cols.values()) if c is not None)
        if assoc is not None:
            cols.extend(assoc.columns)
        cols = list(dict.fromkeys(cols))
        if not cols:
            cols = list(edge.fk_cols)
        rows: list[Any] = []
        for c in conds:
            rows.extend(run(sa.select(*cols).where(c).limit(BULK_ROW_CAP + 1)).all())
            if len(rows) > BULK_ROW_CAP:
                break
        if not rows:
            return None
        whole = conds[0] if len(conds) == 1 else sa.or_(*conds)
        kind = "delete" if edge.action == "delete" else "update"
        if assoc is not None:  # the rows (before the statement) link both sides: tag them
            reader = self._association_reader(run, connection)
            associations.condition_tags(
                assoc, whole, reader, tags, rows if len(rows) <= BULK_ROW_CAP else None
            )
        if len(rows) > BULK_ROW_CAP or not pk:
            if info is not None:
                rule = info.rule
                tags.add(type_tag(rule.entity))
                if rule.list_tag:
                    tags.add(list_tag(rule.entity))
                for attr, column in info.parent_cols.items():
                    q = sa.select(column).distinct().where(whole)
                    ptype = rule.parents[attr]
                    tags.update(parent_tag(ptype, v) for (v,) in run(q) if v is not None)
                if edge.action == "default":
                    self._default_tags(info, edge, tags)
            return whole, None
        seen = visited.setdefault(child, set())
        keys: list[Any] = []
        new_rows = []
        for row in rows:
            key = tuple(row[i] for i in range(len(pk)))
            if key in seen:
                continue  # already tagged (a cycle, or reached through two foreign keys)
            seen.add(key)
            keys.append(key)
            new_rows.append(row)
        if not keys:
            return None
        if info is not None:
            rule = info.rule
            ids = []
            for row in new_rows:
                m = row._mapping
                current = {a: m[c] for a, c in info.parent_cols.items()}
                if info.id_col is not None:
                    current[rule.id_attr] = m[info.id_col]
                    ids.append(m[info.id_col])
                rule.collect(tags, None, kind, current)
            if rule.needs_obj and ids:  # type: ignore[attr-defined]
                self._object_tags(info, ids, kind, connection, tags)
            if edge.action == "default":
                self._default_tags(info, edge, tags)
        if len(pk) == 1:
            return pk[0].in_([k[0] for k in keys]), keys
        return sa.tuple_(*pk).in_(keys), keys

    @staticmethod
    def _default_tags(info: _TableInfo, edge: _Edge, tags: set[str]) -> None:
        """``ON DELETE SET DEFAULT``: the parent the rows now point to, if the default is a
        literal; else ``type:{entity}``."""
        rule = info.rule
        for fk_col in edge.fk_cols:
            attr = next((a for a, c in info.parent_cols.items() if c is fk_col), None)
            if attr is None:
                continue
            default = fk_col.server_default
            value = getattr(default, "arg", None)
            if isinstance(value, TextClause):
                value = value.text
            if isinstance(value, str):
                value = value.strip().strip("'\"")
            if default is None:
                continue  # NULL: no new parent
            if isinstance(value, str | int) and value != "":
                tags.add(parent_tag(rule.parents[attr], value))
            else:
                tags.add(type_tag(rule.entity))

    def _object_tags(
        self,
        info: _TableInfo,
        ids: list[Any],
        kind: str,
        connection: Callable[[], Connection | None],
        tags: set[str],
    ) -> None:
        """``members`` and ``cache_tags`` of rows a bulk statement matched or a database
        cascade deletes: they need the objects, loaded (before the statement) in a
        throwaway session on the same connection (inside the same transaction)."""
        conn = connection()
        if conn is None or info.id_col is None:
            tags.add(type_tag(info.rule.entity))
            return
        rule = info.rule
        tmp = Session(bind=conn, autoflush=False, expire_on_commit=False)
        try:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query: Any = sa.select(rule.model).where(info.id_col.in_(chunk))
                for obj in tmp.scalars(query):
                    rule.collect(tags, obj, kind, obj.__dict__)
        finally:
            tmp.expunge_all()
            tmp.close()

    @staticmethod
    def _info(rule: Rule, mapper: Any, table: sa.Table) -> _TableInfo:
        def col(attr: str) -> sa.Column[Any] | None:
            prop = mapper.attrs.get(attr)
            columns = getattr(prop, "columns", None)
            if columns and columns[0].table is table:
                return columns[0]  # type: ignore[no-any-return]
            return None

        parents = {a: c for a in rule.parents if (c := col(a)) is not None}
        cache = getattr(mapper.base_mapper, "_compiled_cache", None)
        return _TableInfo(rule, table, col(rule.id_attr), parents, cache)

    def _statement_tags(
        self,
        info: _TableInfo,
        stmt: Any,
        rows_params: Sequence[Mapping[str, Any]] | None,
        run: Callable[[Any], Any],
    ) -> tuple[set[str], list[Any]]:
        """Tags for a DML statement on a tracked table, and the matched ids (update)."""
        rule = info.rule
        tags = {type_tag(rule.entity)}
        if rule.list_tag:
            tags.add(list_tag(rule.entity))
        ids: list[Any] = []
        if isinstance(stmt, dml.Insert):
            self._insert_tags(info, stmt, rows_params, run, tags)
            return tags, ids
        cols = [c for c in (info.id_col, *info.parent_cols.values()) if c is not None]
        if not cols:
            return tags, ids
        where = stmt.whereclause
        all_params = rows_params  # the new values they carry are tagged below, in any case
        if where is None and rows_params and info.id_col is not None:
            # executemany by primary key (ORM bulk update by pk): the rows are the ids
            id_keys = (rule.id_attr, info.id_col.key)
            wanted = [next((p[k] for k in id_keys if k in p), None) for p in rows_params]
            if all(v is not None for v in wanted):
                where = info.id_col.in_(wanted)
                rows_params = None
        overflow = False
        if where is not None and rows_params and _unbound(where):
            # executemany with bindparam() criteria: one SELECT per parameter row
            rows: list[Any] = []
            if len(rows_params) > BULK_ROW_CAP:
                overflow, where = True, None  # the parents of the whole table
            else:
                for params in rows_params:
                    query = sa.select(*cols).where(where).params(**params)
                    rows.extend(run(query).all())
        else:
            query = sa.select(*cols)
            if where is not None:
                query = query.where(where)
            rows = run(query.limit(BULK_ROW_CAP + 1)).all()
        if overflow or len(rows) > BULK_ROW_CAP:
            for attr, column in info.parent_cols.items():
                ptype = rule.parents[attr]
                q = sa.select(column).distinct()
                if where is not None:
                    q = q.where(where)
                tags.update(parent_tag(ptype, v) for (v,) in run(q) if v is not None)
        else:
            for found in rows:
                self._row_tags(info, found._mapping, tags)
                if info.id_col is not None:
                    ids.append(found._mapping[info.id_col])
        binds = _bind_columns(stmt)
        new_values = not isinstance(stmt, dml.Delete)
        for params in (all_params or ()) if new_values else ():  # new values as parameters
            self._row_tags(
                info,
                {
                    binds.get(k, k): v
                    for k, v in params.items()
                    if not isinstance(v, list | tuple | set | frozenset | dict)
                },
                tags,
            )
        if (overflow or len(rows) > BULK_ROW_CAP) and self._unknown_new_parents(
            info, stmt, all_params
        ):
            # more rows than are re-read by id, moved to parents computed in SQL: no tag
            # names the new parents' listings; everything is invalidated (rare, and
            # over-invalidating is allowed)
            tags.add(EPOCH_TAG)
        if isinstance(stmt, dml.Update):
            literal = _literal_values(stmt)
            for attr, pcol in info.parent_cols.items():
                value = literal.get(attr, literal.get(pcol.key))
                if value is not None:
                    tags.add(parent_tag(rule.parents[attr], value))
            if info.id_col is not None:  # the primary key itself set: the new id's tag
                new_id = literal.get(rule.id_attr, literal.get(info.id_col.key))
                if new_id is not None:
                    tags.add(entity_tag(rule.entity, new_id))
        return tags, ids

    @staticmethod
    def _computed_values(
        info: _TableInfo, stmt: Any, run: Callable[[Any], Any]
    ) -> dict[str, Any] | None:
        """The id and parent values an INSERT gives as SQL expressions (a scalar
        subquery...), evaluated with one ``SELECT`` before it; None when one cannot be
        evaluated on its own (it refers to parameters of the execution)."""
        values = getattr(stmt, "_values", None) or {}
        wanted = {c.key for c in (info.id_col, *info.parent_cols.values()) if c is not None}
        exprs: dict[str, Any] = {}
        for k, v in values.items():
            key = k if isinstance(k, str) else getattr(k, "key", None)
            if key not in wanted or isinstance(v, str | int | float | type(None)):
                continue
            if isinstance(v, sa.sql.elements.BindParameter):
                continue  # a literal or a parameter of the execution: handled as such
            if isinstance(v, TextClause | sa.sql.functions.FunctionElement) or getattr(
                v, "is_literal", False
            ):
                # raw SQL (DEFAULT...) may only be valid inside the INSERT; a function may
                # change state (nextval): evaluating it first would tag another value
                return None
            if isinstance(v, sa.sql.elements.ClauseElement):
                exprs[str(key)] = v
        if not exprs:
            return {}
        if any(_unbound(e) for e in exprs.values()):
            return None
        try:
            row = run(sa.select(*[e.label(k) for k, e in exprs.items()])).first()
        except Exception:
            return None
        return dict(row._mapping) if row is not None else None

    def _insert_tags(
        self,
        info: _TableInfo,
        stmt: Any,
        rows_params: Sequence[Mapping[str, Any]] | None,
        run: Callable[[Any], Any],
        tags: set[str],
    ) -> None:
        """The rows an INSERT adds: parameter rows, ``values()`` (one row or several),
        ``from_select`` (read with the same SELECT, capped), and for an upsert
        (``ON CONFLICT DO UPDATE`` / ``ON DUPLICATE KEY``) the rows it may overwrite."""
        values = _literal_values(stmt)
        binds = _bind_columns(stmt)
        rows: list[Mapping[Any, Any]] = [
            {**values, **{binds.get(k, k): v for k, v in p.items()}} for p in rows_params or [{}]
        ]
        computed = self._computed_values(info, stmt, run)
        if computed is None:
            tags.add(EPOCH_TAG)  # a parent given as SQL that cannot be evaluated alone
        elif computed:
            rows = [{**row, **computed} for row in rows]
        for group in getattr(stmt, "_multi_values", None) or ():
            for row in group:
                if isinstance(row, Mapping):
                    rows.append(_literal_row(row))
        for row in rows:
            self._row_tags(info, row, tags)
        select = getattr(stmt, "select", None)
        names = getattr(stmt, "_select_names", None)
        if select is not None and names:
            sub = select.subquery()
            by_name = dict(zip(names, sub.c, strict=False))
            pairs = ((info.rule.id_attr, info.id_col), *info.parent_cols.items())
            wanted = [(a, c) for a, c in pairs if c is not None and c.key in by_name]
            if wanted:
                query = sa.select(*[by_name[c.key].label(c.key) for _, c in wanted]).distinct()
                found = run(query.limit(BULK_ROW_CAP + 1)).all()
                for r in found[:BULK_ROW_CAP]:
                    self._row_tags(info, r._mapping, tags)
                if len(found) > BULK_ROW_CAP:  # type:{entity} stands for the ids
                    for attr, column in info.parent_cols.items():
                        if column.key in by_name:
                            q = sa.select(by_name[column.key]).distinct()
                            ptype = info.rule.parents[attr]
                            tags.update(parent_tag(ptype, v) for (v,) in run(q) if v is not None)
        if getattr(stmt, "_post_values_clause", None) is not None and info.id_col is not None:
            # an upsert may move an existing row: its old parents too (looked up by id;
            # without ids in the rows, type:{entity} is what covers it)
            id_keys = (info.rule.id_attr, info.id_col.key, info.id_col)
            ids = [v for r in rows for k in id_keys if (v := r.get(k)) is not None]
            cols = [info.id_col, *info.parent_cols.values()]
            for start in range(0, len(ids), 500):
                query = sa.select(*cols).where(info.id_col.in_(ids[start : start + 500]))
                for r in run(query):
                    self._row_tags(info, r._mapping, tags)

    @staticmethod
    def _row_tags(info: _TableInfo, row: Mapping[Any, Any], tags: set[str]) -> None:
        rule = info.rule

        def get(attr: str, column: sa.Column[Any] | None) -> Any:
            for k in (column, getattr(column, "key", None), attr):
                if k is not None and k in row:
                    return row[k]
            return None

        ident = get(rule.id_attr, info.id_col)
        if ident is not None:
            tags.add(entity_tag(rule.entity, ident))
        for attr, column in info.parent_cols.items():
            value = get(attr, column)
            if value is not None:
                tags.add(parent_tag(rule.parents[attr], value))

    @staticmethod
    def _unknown_new_parents(
        info: _TableInfo, stmt: Any, params: Sequence[Mapping[str, Any]] | None
    ) -> bool:
        """An UPDATE setting a parent column to a value known only to the database (an
        SQL expression: not a literal, not a parameter of the execution)."""
        if not isinstance(stmt, dml.Update) or not info.parent_cols:
            return False
        set_keys = _set_keys(stmt)
        if set_keys is None:  # ORM bulk UPDATE by primary key: the parameters say
            return not params
        literal = _literal_values(stmt)
        bound = set(_bind_columns(stmt).values())
        return any(
            (attr in set_keys or col.key in set_keys)
            and not ({attr, col.key} & (literal.keys() | bound))
            for attr, col in info.parent_cols.items()
        )

    def _update_needs_reselect(self, info: _TableInfo, stmt: Any) -> bool:
        """An UPDATE that sets a parent column to a non-literal value."""
        if not isinstance(stmt, dml.Update):
            return False
        set_keys = _set_keys(stmt)
        if set_keys is None:
            return bool(info.parent_cols)
        literal = _literal_values(stmt)
        return any(
            (attr in set_keys or col.key in set_keys)
            and attr not in literal
            and col.key not in literal
            for attr, col in info.parent_cols.items()
        )

    def _reselect(self, info: _TableInfo, ids: list[Any], run: Callable[[Any], Any]) -> set[str]:
        tags: set[str] = set()
        if info.id_col is None or not info.parent_cols or not ids:
            return tags
        cols = list(info.parent_cols.values())
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for row in run(sa.select(*cols).where(info.id_col.in_(chunk))):
                self._row_tags(info, row._mapping, tags)
        return tags

    def _on_orm_execute(self, orm_state: Any) -> Any:
        if not (orm_state.is_update or orm_state.is_delete or orm_state.is_insert):
            return None
        if not orm_state.is_orm_statement:
            return None  # a Core statement: the engine listener sees it
        session = orm_state.session
        st = self._state(session)
        if not st.owned:
            return None
        self._adopt(st)
        st.wrote = True
        stmt = orm_state.statement
        table = getattr(stmt, "table", None)
        info = self._table_info(table) if table is not None else None
        assoc = self._association(table) if info is None and table is not None else None
        cascade = orm_state.is_delete and table is not None and bool(self._cascade_edges(table))
        if info is None and not cascade and assoc is None:
            return None
        if session.get_transaction() is None:
            session.begin()  # what execute() would autobegin: the tags need a home
        params = orm_state.parameters
        rows_params: list[Mapping[str, Any]] | None
        if isinstance(params, Mapping):
            rows_params = [params]
        elif isinstance(params, list | tuple):
            rows_params = list(params)
        else:
            rows_params = None

        # The statement's own bind (a model under another bind key, a bind= argument): a
        # SELECT built from its columns alone would go to the session's default engine.
        binds = orm_state.bind_arguments

        def run(q: Any) -> Any:
            return session.execute(
                q, execution_options={"_dataroom_internal": True}, bind_arguments=binds
            )

        def connection() -> Connection | None:
            conn: Connection = session.connection(bind_arguments=binds)
            return conn

        tags: set[str]
        ids: list[Any] = []
        if info is not None:
            tags, ids = self._statement_tags(info, stmt, rows_params, run)
            if ids and info.rule.needs_obj:  # type: ignore[attr-defined]
                # members / cache_tags of the matched rows (a delete: before it runs)
                kind = "delete" if orm_state.is_delete else "update"
                self._object_tags(info, ids, kind, connection, tags)
        elif assoc is not None:  # a mapped (untracked) association table
            cond = None
            if not orm_state.is_insert:
                cond = _rows_condition(table, stmt.whereclause, rows_params)
            reader = self._association_reader(run, connection)
            tags = associations.statement_tags(assoc, stmt, rows_params, cond, reader)
        else:
            tags = set()
        if cascade:
            cond = _rows_condition(table, stmt.whereclause, rows_params)
            self._cascade_tags(table, cond, run, connection, tags)  # type: ignore[arg-type]
        result = None
        if info is not None and ids and self._update_needs_reselect(info, stmt):
            result = orm_state.invoke_statement()
            tags |= self._reselect(info, ids, run)
        bucket = self._bucket(session, st)
        if bucket is not None:
            bucket |= tags
            st.flushed = True
        return result

    # -- Core (engine) events ----------------------------------------------------------------------
    def _on_core_execute(
        self,
        conn: Connection,
        clauseelement: Any,
        multiparams: Any,
        params: Any,
        execution_options: Any,
    ) -> None:
        if not isinstance(clauseelement, dml.UpdateBase):
            if isinstance(clauseelement, TextClause):
                self._on_text(conn, clauseelement.text)
            elif ddl.is_ddl_element(clauseelement):
                self._on_ddl(conn)
            return
        if not self.registry:
            return
        if getattr(clauseelement, "_propagate_attrs", {}).get("compile_state_plugin") == "orm":
            return  # ORM-enabled statement: handled by do_orm_execute
        table = getattr(clauseelement, "table", None)
        info = self._table_info(table) if table is not None else None
        # an association table: its rows link tracked rows (secondary DML of a flush too)
        assoc = self._association(table) if info is None and table is not None else None
        # a DELETE whose rows the database cascades to tracked rows: read them first
        cascade = (
            isinstance(clauseelement, dml.Delete)
            and table is not None
            and bool(self._cascade_edges(table))
        )
        owner = self._conn_owner.get(conn)
        if owner is not None:
            if (
                assoc is None
                and _in_unit_of_work(owner)
                and _flush_statement(execution_options, info)
            ):
                # the flush's own statements: after_flush tags the flushed objects, but
                # not the rows the database deletes with them (passive_deletes). Other
                # statements during a flush (a mapper event's Core DML) are tracked below.
                if cascade:
                    rows = _rows_params(multiparams, params)
                    self._deliver_core(
                        conn, owner, self._delete_cascade(conn, table, clauseelement, rows)
                    )
                return
        elif execution_options:
            cache = execution_options.get("compiled_cache")
            if cache is not None and (info is None or cache is info.mapper_cache):
                return  # an untracked session's flush (or bulk_save_*): not ours
        if info is None and not cascade and assoc is None:
            if owner is not None:
                owner.wrote = True
            return
        rows_params = _rows_params(multiparams, params)

        def run(q: Any) -> Any:
            return conn.execute(q)

        tags: set[str]
        ids: list[Any] = []
        if info is not None:
            tags, ids = self._statement_tags(info, clauseelement, rows_params or None, run)
            if ids and info.rule.needs_obj:  # type: ignore[attr-defined]
                kind = "delete" if isinstance(clauseelement, dml.Delete) else "update"
                self._object_tags(info, ids, kind, lambda: conn, tags)
        elif assoc is not None:
            cond = None
            if not isinstance(clauseelement, dml.Insert):
                where = getattr(clauseelement, "whereclause", None)
                cond = _rows_condition(table, where, rows_params or None)
            reader = self._association_reader(run, lambda: conn)
            tags = associations.statement_tags(
                assoc, clauseelement, rows_params or None, cond, reader
            )
        else:
            tags = set()
        if cascade:
            tags |= self._delete_cascade(conn, table, clauseelement, rows_params)
        if info is not None and ids and self._update_needs_reselect(info, clauseelement):
            # the new parents are only known once the statement ran: after_execute
            conn.info[self.key + ".reselect"] = (info, ids, owner)
        self._deliver_core(conn, owner, tags)

    def _on_text(self, conn: Connection, sql: str) -> None:
        """Textual SQL (``text()``, ``exec_driver_sql``). Its rows are unknown: a write to
        a tracked table (or to a table the statement does not name plainly) bumps
        ``type:{entity}`` and ``{entity}:list``, and the session treats it as a flushed
        change (reads bypass the cache, fills are dropped, ``invalidate_tags`` is
        deferred), so nothing it wrote can reach the cache before the commit."""
        if not (_WRITE_SQL.match(sql) or _WRITE_CTE.match(sql)):
            if ddl.is_ddl_text(sql):
                self._on_ddl(conn)
            return
        owner = self._conn_owner.get(conn)
        if owner is not None:
            owner.wrote = True
        if not self.registry:
            return
        self._table_info(None)  # refresh the table map
        target = _TEXT_TARGET.match(sql)
        infos: list[_TableInfo]
        assocs = self._associations.all(self._tables)
        if target is None or _WRITE_CTE.match(sql) or _MORE_STATEMENTS.search(sql):
            # a WITH ... write, several statements: the targets are unknown, every
            # tracked type is bumped (TRUNCATE is a schema-level reset: _on_ddl)
            infos = [i for i in self._tables.values() if i is not None]
            linked = list(assocs.values())
        else:
            name = target.group(1)
            quoted = name[0] in '"`['
            # quoted names are case-sensitive on PostgreSQL only (SQLite, MySQL: not)
            exact = quoted and conn.dialect.name == "postgresql"
            name = name[1:-1] if quoted else name
            if not exact:
                name = name.lower()
            infos = [
                i
                for t, i in self._tables.items()
                if i is not None and (t.name if exact else t.name.lower()) == name
            ]
            linked = [a for t, a in assocs.items() if (t.name if exact else t.name.lower()) == name]
        tags: set[str] = set()
        for info in infos:
            tags.add(type_tag(info.rule.entity))
            if info.rule.list_tag:
                tags.add(list_tag(info.rule.entity))
        for assoc in linked:  # an association table: its own and its sides' type tags
            assoc.text_tags(tags)
        if tags:
            self._deliver_core(conn, owner, tags)

    def _on_ddl(self, conn: Connection) -> None:
        """A schema change (:mod:`.ddl`): the namespace epoch, delivered like a Core
        statement's tags (at the commit, dropped by a rollback); the session treats it as
        a flushed change. Marked on the connection so that, once it ran, a DDL statement
        that committed by itself is sent at once too (:meth:`_after_ddl`)."""
        owner = self._conn_owner.get(conn)
        if owner is not None:
            owner.wrote = True
        self._deliver_core(conn, owner, {EPOCH_TAG})
        conn.info[self.key + ".ddl"] = True

    def _after_ddl(self, conn: Connection) -> None:
        # AUTOCOMMIT: sent already; else the pending copy still goes out at the commit
        ran = conn.info.pop(self.key + ".ddl", None)
        if ran and not _autocommit(conn) and ddl.commits_itself(conn):
            self.send((EPOCH_TAG,))

    def _delete_cascade(
        self, conn: Connection, table: Any, stmt: Any, rows_params: list[Mapping[str, Any]]
    ) -> set[str]:
        tags: set[str] = set()
        cond = _rows_condition(table, stmt.whereclause, rows_params or None)
        self._cascade_tags(table, cond, conn.execute, lambda: conn, tags)
        return tags

    def _deliver_core(self, conn: Connection, owner: _SessionState | None, tags: set[str]) -> None:
        session = owner.session_ref() if owner is not None else None
        if owner is not None and session is not None and session.in_transaction():
            self._adopt(owner)
            owner.wrote = True
            bucket = self._bucket(session, owner)
            if bucket is not None:
                bucket |= tags
                owner.flushed = True
                return
        if owner is None and _autocommit(conn):
            # each statement commits by itself: send once it has run (after_execute)
            now = conn.info.setdefault(self.key + ".now", set())
            now |= tags
            return
        pending = conn.info.setdefault(self.key, set())
        pending |= tags

    def _on_core_executed(
        self,
        conn: Connection,
        clauseelement: Any,
        multiparams: Any,
        params: Any,
        execution_options: Any,
        result: Any,
    ) -> None:
        pending = conn.info.pop(self.key + ".reselect", None)
        if pending is not None:
            info, ids, owner = pending
            self._deliver_core(conn, owner, self._reselect(info, ids, conn.execute))
        now = conn.info.pop(self.key + ".now", None)
        if now:
            self.send(now)  # autocommit: the statement is committed
        self._after_ddl(conn)

    def _on_cursor_execute(self, conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        context = args[1] if len(args) > 1 else None
        if getattr(context, "compiled", None) is None:  # Connection.exec_driver_sql()
            self._on_text(conn, statement)

    def _on_cursor_executed(self, conn: Connection, *args: Any) -> None:
        context = args[3] if len(args) > 3 else None
        if getattr(context, "compiled", None) is not None:
            return  # a compiled statement (maybe one batch of several): after_execute sends
        now = conn.info.pop(self.key + ".now", None)
        if now:
            self.send(now)  # autocommit: the driver-level statement is committed
        self._after_ddl(conn)

    def _on_conn_commit(self, conn: Connection) -> None:
        """Before a connection's COMMIT: hand its tags to the ``do_commit`` wrapper
        (:meth:`attach_engine`), which sends them right after the COMMIT; if it does not
        run, they go out when the connection returns to the pool.

        The tags of a tracked session committing its root transaction on this connection
        go out there too (not parked: a COMMIT that fails must send nothing), so they are
        delivered before SQLAlchemy dispatches ``after_commit`` to any listener."""
        # Anything pending on the connection is not a session's own (a session keeps its
        # tags in its buckets): Core statements, or a joined session's tags parked for
        # this COMMIT, even if a session has begun on the connection again since.
        conn.info.pop(self.key + ".sp", None)
        tags = conn.info.pop(self.key, None)
        info = conn.info
        if tags:
            info[self.key + ".resend"] = info.get(self.key + ".resend", set()) | tags
        owner = self._conn_owner.get(conn)
        if owner is not None and not (owner.owned and owner.buckets):
            owner = None
        if tags or owner is not None:
            # the DBAPI connection identifies this COMMIT in do_commit; the record's info
            # dict stays valid after the Connection is closed
            self._local.committing = _Committing(_dbapi(conn), info, owner)

    def _on_conn_commit_twophase(self, conn: Connection, xid: Any, is_prepared: bool) -> None:
        """A two-phase COMMIT (``do_commit_twophase``, not wrapped): the tags go out when
        the connection returns to the pool, after it."""
        tags = conn.info.pop(self.key, None)
        if tags:
            info = conn.info
            info[self.key + ".resend"] = info.get(self.key + ".resend", set()) | tags

    def _after_core_commit(self, dbapi_connection: Any) -> None:
        """Right after a DBAPI COMMIT succeeded: send what it committed. For a session's
        root transaction this is the first of its connections to commit (its whole set
        goes out then: over-invalidating a multi-bind session, never late), inside
        ``Session.commit()`` before ``after_commit`` is dispatched."""
        pending: _Committing | None = getattr(self._local, "committing", None)
        if pending is None:
            return
        self._local.committing = None
        if pending.dbapi is not dbapi_connection:
            return  # another connection's COMMIT: that one's own check-in resends
        info = pending.info
        tags = info.pop(self.key + ".resend", None)
        st = pending.session
        session = st.session_ref() if st is not None else None
        if st is not None and session is not None:
            root = session.get_transaction()
            own = st.buckets.pop(root, None) if root is not None else None
            if own:
                st.delivered = own if st.delivered is None else st.delivered | own
                tags = own if tags is None else tags | own
        if tags:
            try:
                self.send(tags)
            except Exception:  # never fail a COMMIT that went through: check-in retries
                log.exception("dataroom cache: sending a Core commit's tags failed")
                info[self.key + ".resend"] = tags

    def _on_conn_savepoint(self, conn: Connection, name: Any) -> None:
        """A Core SAVEPOINT: remember which pending tags predate it, so rolling back to
        it drops only the tags collected since (a session's savepoints keep their own
        buckets; this is for tags parked on the connection). SQLAlchemy names the
        savepoint after this event, and savepoints nest, so the marks are a stack: a
        rollback or release applies to the innermost (for an outer one rolled back past
        open inner ones this keeps a few tags too many: over-invalidating, never under)."""
        # every SAVEPOINT pushes (a session's too), so pushes and pops stay paired
        marks = conn.info.setdefault(self.key + ".sp", [])
        marks.append(set(conn.info.get(self.key, ())))

    def _on_conn_rollback_savepoint(self, conn: Connection, name: Any, context: Any) -> None:
        marks = conn.info.get(self.key + ".sp")
        if marks:
            before = marks.pop()
            if before:
                conn.info[self.key] = before
            else:
                conn.info.pop(self.key, None)

    def _on_conn_release_savepoint(self, conn: Connection, name: Any, context: Any) -> None:
        marks = conn.info.get(self.key + ".sp")
        if marks:
            marks.pop()

    def _on_conn_rollback(self, conn: Connection) -> None:
        conn.info.pop(self.key, None)
        conn.info.pop(self.key + ".sp", None)
        conn.info.pop(self.key + ".reselect", None)
        conn.info.pop(self.key + ".ddl", None)
        pending: _Committing | None = getattr(self._local, "committing", None)
        if pending is not None and pending.dbapi is _dbapi(conn):
            self._local.committing = None

    def _on_checkin(self, dbapi_conn: Any, record: Any) -> None:
        info = getattr(record, "info", None)
        if not info:
            return
        # Tags still pending here were committed by a path no commit event showed
        # (a two-phase commit, a session that took over the connection): a rollback
        # would have dropped them. Sent now (over-invalidating at worst).
        tags = info.pop(self.key, None) or set()
        info.pop(self.key + ".reselect", None)
        info.pop(self.key + ".ddl", None)
        info.pop(self.key + ".sp", None)
        tags |= info.pop(self.key + ".resend", None) or set()
        if tags:
            self.send(tags)


def _dbapi(conn: Connection) -> Any:
    """What ``Connection`` hands to ``dialect.do_commit``: its pool-proxied DBAPI
    connection (None once it is closed)."""
    try:
        return conn.connection
    except Exception:
        return None


def _autocommit(conn: Connection) -> bool:
    """True if ``conn`` runs in AUTOCOMMIT isolation (each statement commits itself)."""
    check = getattr(conn, "_is_autocommit_isolation", None)
    try:
        return bool(check()) if check is not None else False
    except Exception:  # pragma: no cover - private API changed
        return False


def _flush_statement(execution_options: Any, info: _TableInfo | None) -> bool:
    """True for a statement the unit of work itself emits: SQLAlchemy's persistence layer
    runs them with the mapper's own ``compiled_cache``; a statement a flush *event* runs
    on the flush's connection does not carry it."""
    cache = execution_options.get("compiled_cache") if execution_options else None
    if cache is None:
        return False
    return info is None or cache is info.mapper_cache


def _in_unit_of_work(owner: _SessionState) -> bool:
    """True while the owning session runs a flush's own statements (not ``bulk_save_*``,
    which also sets ``_flushing`` but has no flush context and no flush events)."""
    session = owner.session_ref()
    if session is None or not getattr(session, "_flushing", False):
        return False
    ref = owner.flush_ctx
    ctx = ref() if ref is not None else None
    if ctx is None:
        return False
    tx = getattr(ctx, "transaction", None)
    return tx is not None and tx is getattr(session, "_transaction", tx)


def _rows_params(multiparams: Any, params: Any) -> list[Mapping[str, Any]]:
    rows_params: list[Mapping[str, Any]] = []
    for p in (multiparams, params):
        if isinstance(p, Mapping):
            if p:
                rows_params.append(p)
        elif isinstance(p, list | tuple):
            rows_params.extend(x for x in p if isinstance(x, Mapping))
    return rows_params


def _rows_condition(table: Any, where: Any, rows_params: Sequence[Mapping[str, Any]] | None) -> Any:
    """A condition on ``table`` matching (at least) the rows a DELETE removes: its WHERE,
    with each parameter row's values when the criteria are ``bindparam()``s (executemany;
    the unit of work's own ``DELETE ... WHERE id = :id`` becomes ``id IN (...)``)."""
    if where is None:
        return sa.true()
    if not rows_params or not _unbound(where):
        return where
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.elements import BindParameter

    keys = {
        el.key
        for el in visitors.iterate(where)
        if isinstance(el, BindParameter) and el.value is None and el.callable is None
    }
    pk = list(table.primary_key.columns)
    expanding = any(
        isinstance(el, BindParameter) and el.expanding for el in visitors.iterate(where)
    )
    if (
        not expanding
        and len(pk) == 1
        and keys == {pk[0].key}
        and all(pk[0].key in p for p in rows_params)
    ):
        return pk[0].in_([p[pk[0].key] for p in rows_params])

    def bound(params: Mapping[str, Any]) -> Any:
        def replace(el: Any) -> Any:
            if isinstance(el, BindParameter) and el.key in params and el.key in keys:
                # an anonymous bind with the value (an IN list stays an expanding one)
                return sa.bindparam(None, params[el.key], type_=el.type, expanding=el.expanding)
            return None

        found: Any = visitors.replacement_traverse(where, {}, replace)  # type: ignore[call-overload]
        return found

    return sa.or_(*(bound(p) for p in rows_params))


def _unbound(where: Any) -> bool:
    """True if the criteria hold ``bindparam()``s whose values come with each execution."""
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.elements import BindParameter

    return any(
        isinstance(el, BindParameter) and el.value is None and el.callable is None
        for el in visitors.iterate(where)
    )


def _set_keys(stmt: Any) -> set[str] | None:
    values = getattr(stmt, "_values", None)
    ordered = getattr(stmt, "_ordered_values", None)
    items: list[Any] = []
    if values:
        items.extend(values.keys())
    if ordered:
        items.extend(k for k, _ in ordered)
    if values is None and ordered is None:
        return None
    out = set()
    for k in items:
        key = k if isinstance(k, str) else getattr(k, "key", None)
        if key is None:
            return None
        out.add(key)
    return out


def _bind_columns(stmt: Any) -> dict[str, str]:
    """``{bindparam key: column key}`` for SET / VALUES entries given as ``bindparam()``
    whose values come with each execution (executemany parameter rows use these keys)."""
    out: dict[str, str] = {}
    values = getattr(stmt, "_values", None) or {}
    ordered = getattr(stmt, "_ordered_values", None) or []
    for k, v in [*values.items(), *ordered]:
        key = k if isinstance(k, str) else getattr(k, "key", None)
        if (
            key is not None
            and isinstance(v, sa.sql.elements.BindParameter)
            and v.value is None
            and v.callable is None
        ):
            out[v.key] = key
    return out


def _literal_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    """One row of a multi-row ``values([...])``: ``{column key: literal value}``."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        key = k if isinstance(k, str) else getattr(k, "key", None)
        if key is None:
            continue
        if isinstance(v, sa.sql.elements.BindParameter):
            if v.callable is None and v.value is not None:
                out[key] = v.value
        elif isinstance(v, str | int):
            out[key] = v
    return out


def _literal_values(stmt: Any) -> dict[str, Any]:
    """``{column key: value}`` of the statement's SET / VALUES that are plain literals."""
    out: dict[str, Any] = {}
    values = getattr(stmt, "_values", None) or {}
    ordered = getattr(stmt, "_ordered_values", None) or []
    for k, v in [*values.items(), *ordered]:
        key = k if isinstance(k, str) else getattr(k, "key", None)
        if key is None:
            continue
        if isinstance(v, sa.sql.elements.BindParameter):
            if v.callable is None and v.value is not None:
                out[key] = v.value
        elif isinstance(v, str | int):
            out[key] = v
    return out
