"""Session events -> pending tags per (sub)transaction -> delivery after the outermost commit.

Listeners on one session *factory* (Flask-SQLAlchemy's, or one passed to
``track_session``), never on the global ``Session`` class, so other apps and engines in
the process are unaffected::

    after_transaction_create  a root transaction: fresh state, registered for this
                              thread; a savepoint: a new level of pending tags
    after_begin               the transaction's first use of a connection: its commit
                              sequence and time (snapshot rule), the connection's owner
    before_flush / after_flush  flushed objects -> tags (``flush.py``) -> the innermost
                              level
    do_orm_execute            bulk ORM DML -> tags (``statements.py``) -> the innermost level
    (COMMIT)                  the outermost commit: its tags are sent, once, right after
                              the first DBAPI COMMIT of the session's connections (the
                              commit hook, ``connection.py``), before SQLAlchemy
                              dispatches ``after_commit``: every ``after_commit``
                              listener, whenever registered, sees it done
    after_commit              a savepoint released: its level merges into the enclosing
                              one; an outermost commit with no COMMIT of its own (joined
                              to an outer transaction, two-phase, no connection): its tags
                              are sent now, or parked on the joined connection until the
                              outer COMMIT
    after_transaction_end     a level still open for the ending transaction was rolled
                              back: dropped; the root: the state is reset

The per-session state (:class:`SessionState`) lives in ``session.info`` under the
tracker's key; the sessions with an open transaction are also listed per thread
(``snapshot.py``'s :class:`~.snapshot.ThreadSessions`), where the store hooks look.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, SessionTransaction

from .autoflush import AutoFlush, LoadedValues
from .connection import connection_record, find_record
from .flush import FlushTags, OldValues
from .pending import PendingTags
from .sqlexpr import base_engine, is_flask_sqlalchemy_session
from .statements import dml_tags, reselect, update_needs_reselect

if TYPE_CHECKING:
    from flask import Flask

    from ..rules import Registry
    from .autostatements import AutoStatements
    from .cascades import CascadeGraph
    from .delivery import Delivery
    from .rows import TrackedTables
    from .snapshot import SnapshotRules, ThreadSessions
    from .unitofwork import Unit

__all__ = ["SESSION_EVENTS", "SessionEvents", "SessionState"]

#: Session event -> listener method of :class:`SessionEvents`, in the order attached.
SESSION_EVENTS = {
    "after_transaction_create": "on_transaction_create",
    "after_begin": "on_begin",
    "before_flush": "on_before_flush",
    "after_flush": "on_after_flush",
    "after_flush_postexec": "on_flush_done",
    "after_soft_rollback": "on_soft_rollback",
    "after_commit": "on_commit",
    "after_transaction_end": "on_transaction_end",
    "do_orm_execute": "on_orm_execute",
}


@dataclass(slots=True, weakref_slot=True, eq=False)
class SessionState:
    """One session's tracking state, for one tracker (in ``session.info``)."""

    session_ref: weakref.ref[Session]
    #: False for a Flask-SQLAlchemy session used under another app sharing its ``db``.
    owned: bool
    #: Tags collected per open transaction level (root, savepoints).
    pending: PendingTags = field(default_factory=PendingTags)
    #: What ``before_flush`` read for ``after_flush`` (``flush.py``).
    old_values: OldValues = field(default_factory=dict)
    #: Value columns ``before_flush`` read for automatic tags (``autoflush.py``).
    auto_loaded: LoadedValues = field(default_factory=dict)
    #: The transaction has written to the database (any table, tracked or not):
    #: ``invalidate_tags`` calls are deferred to its commit.
    has_written: bool = False
    #: The transaction has collected tags of written tracked rows: this thread's reads
    #: bypass the cache and its fills are dropped until it ends.
    has_tracked_writes: bool = False
    #: The flush under way (its own statements are the flush's, see ``connection.py``).
    flush_context: weakref.ref[Any] | None = None
    #: The commit sequence when the database transaction began (snapshot rule).
    begin_seq: int | None = None
    #: ``time.time()`` when the database transaction began (snapshot rule across processes).
    began_at: float | None = None
    #: The connections the transaction uses (their owner is this state).
    connections: list[Connection] = field(default_factory=list)
    #: The unit of work this state is listed in (:class:`ThreadSessions`).
    listed_in: Unit | None = None
    #: The root transaction's tags, already sent at the COMMIT of one of ``connections``
    #: (the commit hook, ``connection.py``); ``after_commit`` still parks them on
    #: connections joined to an outer transaction.
    delivered: set[str] | None = None

    def reset(self, root: SessionTransaction | None) -> None:
        """A root transaction begins (``root``) or ended (None): forget the last one's."""
        if root is None:
            self.pending.clear()
        else:
            self.pending.reset(root)
        self.old_values.clear()
        self.auto_loaded.clear()
        self.has_written = self.has_tracked_writes = False
        self.flush_context = None
        self.begin_seq = None
        self.began_at = None
        self.delivered = None


def _open_transactions(session: Session) -> list[SessionTransaction]:
    """The root transaction, then each open savepoint inside it, outermost first."""
    chain: list[SessionTransaction] = []
    tx = session.get_nested_transaction() or session.get_transaction()
    while tx is not None:
        if tx.nested or tx.parent is None:
            chain.append(tx)
        tx = tx.parent
    return chain[::-1]


class SessionEvents:
    """The session listeners of one tracker."""

    def __init__(
        self,
        *,
        key: str,
        app_ref: weakref.ref[Flask],
        registry: Registry,
        tables: TrackedTables,
        cascades: CascadeGraph,
        threads: ThreadSessions,
        rules: SnapshotRules,
        delivery: Delivery,
        owners: weakref.WeakKeyDictionary[Connection, SessionState],
        engines: weakref.WeakSet[Engine],
        attach_engine: Callable[[Engine], None],
        auto_flush: AutoFlush | None = None,
        auto_statements: AutoStatements | None = None,
    ) -> None:
        #: Automatic tags (``autoflush.py``, ``autostatements.py``); None when off.
        self.auto_flush = auto_flush
        self.auto_statements = auto_statements
        self.key = key
        self.app_ref = app_ref
        self.registry = registry
        self.tables = tables
        self.cascades = cascades
        self.threads = threads
        self.rules = rules
        self.delivery = delivery
        self.owners = owners
        #: The engines listened on, and how to listen on one more.
        self.engines = engines
        self.attach_engine = attach_engine
        self.flush = FlushTags(registry)

    # -- wiring -------------------------------------------------------------------------------
    def attach(self, target: Any) -> None:
        for name, method in SESSION_EVENTS.items():
            event.listen(target, name, getattr(self, method))

    def detach(self, target: Any) -> None:
        for name, method in SESSION_EVENTS.items():
            listener = getattr(self, method)
            if event.contains(target, name, listener):
                event.remove(target, name, listener)

    # -- per-session state --------------------------------------------------------------------
    def state_of(self, session: Session) -> SessionState:
        state: SessionState | None = session.info.get(self.key)
        if state is None:
            state = SessionState(weakref.ref(session), self._owns(session))
            for tx in _open_transactions(session):  # attached while a transaction was open
                state.pending.begin(tx)
            session.info[self.key] = state
        return state

    def _owns(self, session: Session) -> bool:
        """False for a session of another app sharing the same Flask-SQLAlchemy object.

        Only Flask-SQLAlchemy's sessions (they carry their ``SQLAlchemy`` object) are
        shared between apps; a factory passed to ``track_session`` belongs to this app
        whatever app context is pushed."""
        if not is_flask_sqlalchemy_session(session) or not has_app_context():
            return True
        return current_app._get_current_object() is self.app_ref()  # type: ignore[attr-defined]

    # -- transactions -----------------------------------------------------------------------
    def on_transaction_create(self, session: Session, tx: SessionTransaction) -> None:
        if tx.parent is not None:
            if tx.nested:  # a savepoint: its own level
                state: SessionState | None = session.info.get(self.key)
                if state is not None:
                    state.pending.begin(tx)
            return  # else a flush's subtransaction: never holds tags
        state = session.info.get(self.key)
        if state is None:
            state = self.state_of(session)
        else:
            state.owned = self._owns(session)
        state.reset(tx)
        if state.owned:
            self.threads.register(state)

    def on_begin(self, session: Session, tx: SessionTransaction, conn: Connection) -> None:
        state = self.state_of(session)
        if not state.owned:
            return
        engine = base_engine(conn.engine)  # an OptionEngine: its base engine
        if engine not in self.engines:
            # an unbound factory (Session(bind=...) per call): Core statements through
            # this session reach the engine listeners from now on
            self.attach_engine(engine)
        if state.begin_seq is None:
            state.begin_seq = self.rules.seq
            state.began_at = time.time()
        self.owners[conn] = state
        state.connections.append(conn)
        record = find_record(conn, self.key)
        if record is not None and record.pending:
            # Core statements on this connection before the session began on it: their
            # rows are uncommitted, so this session must neither fill from them nor
            # serve cached versions of them (it reads them).
            state.has_written = state.has_tracked_writes = True
            if getattr(session, "join_transaction_mode", None) == "control_fully":
                # the session's COMMIT (or ROLLBACK) is theirs now: into its root
                # transaction (not a savepoint the session may have begun with). In the
                # other join modes the outer transaction keeps them and sends them.
                root = session.get_transaction()
                if root is not None:
                    state.pending.add_to(root, record.pending.take_all())

    def on_soft_rollback(self, session: Session, previous: SessionTransaction) -> None:
        state: SessionState | None = session.info.get(self.key)
        if state is not None:
            state.flush_context = None
            state.old_values.clear()
            state.auto_loaded.clear()

    def on_commit(self, session: Session) -> None:
        state: SessionState | None = session.info.get(self.key)
        if state is None or not state.owned or not (state.pending or state.delivered):
            return
        nested = session.get_nested_transaction()
        if nested is not None:  # a savepoint was released: keep its tags
            state.pending.release(nested)
            return
        tags = state.pending.commit()
        # Usually already sent, at the first COMMIT of the session's connections (the
        # commit hook): ``delivered``. Still here: no connection of the session ran a
        # COMMIT of its own (all joined, two-phase, none at all).
        delivered, state.delivered = state.delivered, None
        if tags or delivered:
            # A connection still in a transaction is joined to one the session does not
            # own (Session(bind=conn) inside conn.begin()): its data is committed by that
            # outer COMMIT, so the tags wait for it there (the Core path sends them). If
            # another bind really committed now, they go out now too (a multi-bind
            # session: over-invalidating, never late).
            joined = [c for c in state.connections if c.in_transaction()]
            for conn in joined:
                connection_record(conn, self.key).pending.add((*tags, *(delivered or ())))
            if tags and (len(joined) < len(state.connections) or not state.connections):
                self.delivery.send(tags)

    def on_transaction_end(self, session: Session, tx: SessionTransaction) -> None:
        if tx.parent is not None and not tx.nested:
            return  # a flush's subtransaction: never holds tags
        state: SessionState | None = session.info.get(self.key)
        if state is None:
            return
        if tx.parent is not None:
            state.pending.rollback(tx)  # its level still open: rolled back
            return
        state.reset(None)
        for conn in state.connections:
            self.owners.pop(conn, None)
        state.connections.clear()
        self.threads.unregister(state)

    # -- flushes ------------------------------------------------------------------------------
    def on_before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        state = self.state_of(session)
        if not state.owned:
            return
        if self.auto_flush is not None:
            self.threads.adopt(state)
            state.flush_context = weakref.ref(flush_context)
            self.auto_flush.remember(session, state.auto_loaded)
        if not self.registry:
            return
        self.threads.adopt(state)
        state.flush_context = weakref.ref(flush_context)
        self.flush.remember(session, state.old_values)

    def on_after_flush(self, session: Session, flush_context: Any) -> None:
        state = self.state_of(session)
        if not state.owned:
            return
        self.threads.adopt(state)
        state.has_written = True
        if self.auto_flush is not None:
            auto: set[str] = set()
            self.auto_flush.collect(flush_context, state.auto_loaded, auto)
            if auto and state.pending.add(auto):
                state.has_tracked_writes = True
        if not self.registry:
            return
        tags = self.flush.collect(session, flush_context, state.old_values)
        if tags and state.pending.add(tags):
            state.has_tracked_writes = True

    def on_flush_done(self, session: Session, flush_context: Any) -> None:
        state: SessionState | None = session.info.get(self.key)
        if state is not None:
            state.flush_context = None

    # -- bulk ORM statements ----------------------------------------------------------------
    def on_orm_execute(self, orm_state: Any) -> Any:
        if not (orm_state.is_update or orm_state.is_delete or orm_state.is_insert):
            return None
        if not orm_state.is_orm_statement:
            return None  # a Core statement: the engine listener sees it
        session = orm_state.session
        state = self.state_of(session)
        if not state.owned:
            return None
        self.threads.adopt(state)
        state.has_written = True
        stmt = orm_state.statement
        table = getattr(stmt, "table", None)
        info = self.tables.get(table) if table is not None else None
        assoc = self.tables.association(table) if info is None and table is not None else None
        cascade = orm_state.is_delete and table is not None and bool(self.cascades.edges(table))
        auto = self.auto_statements if not orm_state.is_insert else None
        mapper = orm_state.bind_mapper if auto is not None else None
        if mapper is None:
            auto = None  # an INSERT: tagged once it ran (engine events)
        if info is None and not cascade and assoc is None and auto is None:
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

        if info is not None or cascade or assoc is not None:
            tags, ids = dml_tags(
                info, assoc, self.cascades, stmt, rows_params, run, connection, cascade=cascade
            )
        else:
            tags, ids = set(), []
        result = None
        if auto is not None:  # automatic tags: old rows now, new rows once it ran
            auto_tags, after = auto.orm(mapper, stmt, rows_params, run)
            tags |= auto_tags
            local = auto.auto.local
            local.orm = getattr(local, "orm", 0) + 1  # its Core statements: tagged here
            try:
                result = orm_state.invoke_statement()
            finally:
                local.orm -= 1
            if after is not None:
                tags |= auto.after_update(after, run)
        if info is not None and ids and update_needs_reselect(info, stmt):
            if result is None:
                result = orm_state.invoke_statement()
            tags |= reselect(info, ids, run)
        if tags and state.pending.add(tags):
            state.has_tracked_writes = True
        return result
