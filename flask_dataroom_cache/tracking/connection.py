"""Engine events: Core DML and textual SQL, Core transactions, the per-connection record.

Listeners on each tracked engine::

    before_execute          Core insert/update/delete on a tracked table (or a DELETE the
                            database cascades to one) -> tags (``statements.py``);
                            textual SQL -> ``textual.py``
    before_cursor_execute   ``exec_driver_sql`` (no before_execute): textual SQL
    after_execute, after_cursor_execute
                            an UPDATE's new parents re-read; an AUTOCOMMIT statement's
                            tags delivered (it committed itself)
    savepoint, release_savepoint, rollback_savepoint, rollback
                            the connection's pending levels (``pending.py``)
    commit                  the connection's tags handed to the commit hook
    commit_twophase, checkin
                            what no commit hook saw goes out when the connection returns
                            to the pool (over-invalidating at worst)

Where Core tags go (:meth:`EngineEvents.route`): into the pending tags of the session that
owns the connection (its transaction commits them), else onto the connection's own
:class:`ConnectionRecord`, kept in the DBAPI connection's ``info`` (it outlives one
``Connection`` object), until its COMMIT.

Core has no after-commit event (``commit`` fires before the COMMIT): the commit hook
(``commit_hook.py``) calls :meth:`EngineEvents.after_dbapi_commit` right after the DBAPI
COMMIT, and the tags go out then.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import dml
from sqlalchemy.sql.elements import TextClause

from . import textual
from .commit_hook import hook_commit, unhook_commit
from .pending import PendingTags
from .rows import TableInfo
from .sqlexpr import is_autocommit, is_orm_statement, running_flush_of
from .statements import dml_tags, parameter_rows, reselect, update_needs_reselect

if TYPE_CHECKING:
    from ..rules import Registry
    from .cascades import CascadeGraph
    from .delivery import Delivery
    from .rows import TrackedTables
    from .session import SessionState, ThreadSessions

__all__ = [
    "ENGINE_EVENTS",
    "ConnectionRecord",
    "EngineEvents",
    "connection_record",
    "find_record",
]

log = logging.getLogger("flask_dataroom_cache")

#: Engine (and pool) event -> listener method of :class:`EngineEvents`, in the order attached.
ENGINE_EVENTS = {
    "before_execute": "on_before_execute",
    "after_execute": "on_after_execute",
    # exec_driver_sql() skips before/after_execute: only the cursor events see it
    "before_cursor_execute": "on_before_cursor_execute",
    "after_cursor_execute": "on_after_cursor_execute",
    "commit": "on_commit",
    "commit_twophase": "on_commit_twophase",
    "savepoint": "on_savepoint",
    "rollback_savepoint": "on_rollback_savepoint",
    "release_savepoint": "on_release_savepoint",
    "rollback": "on_rollback",
    "checkin": "on_checkin",
}


@dataclass(slots=True)
class Reselect:
    """An UPDATE's matched rows whose new parents are read once it ran."""

    info: TableInfo
    ids: list[Any]
    owner: SessionState | None


def _root_level() -> PendingTags:
    pending = PendingTags()
    pending.begin()
    return pending


@dataclass(slots=True)
class ConnectionRecord:
    """What one tracker keeps on one DBAPI connection (in its pool record's ``info``)."""

    #: Tags of statements no session owns (and a joined session's tags, parked for the
    #: outer COMMIT), per Core savepoint: the root level, one more per open SAVEPOINT.
    pending: PendingTags = field(default_factory=_root_level)
    #: AUTOCOMMIT statements' tags: delivered as soon as the statement has run.
    autocommit: set[str] = field(default_factory=set)
    #: Tags of a COMMIT under way: delivered by the commit hook right after it, else
    #: (a two-phase COMMIT, a failed delivery) when the connection is checked in.
    committed: set[str] = field(default_factory=set)
    #: Set by ``before_execute``, used by ``after_execute``.
    reselect: Reselect | None = None


def connection_record(conn: Connection, key: str) -> ConnectionRecord:
    """The record of ``conn`` under the tracker's ``key``, made if missing."""
    info = conn.info
    record: ConnectionRecord | None = info.get(key)
    if record is None:
        record = info[key] = ConnectionRecord()
    return record


def find_record(conn: Connection, key: str) -> ConnectionRecord | None:
    """The record of ``conn`` under the tracker's ``key``, if it has one."""
    return conn.info.get(key)  # type: ignore[no-any-return]


@dataclass(slots=True)
class _Committing:
    """A COMMIT about to run: from the ``commit`` event to the commit hook."""

    #: What ``Connection`` hands to ``dialect.do_commit``: identifies this COMMIT.
    dbapi: Any
    #: Its record (it stays valid after the ``Connection`` is closed).
    record: ConnectionRecord


def _dbapi(conn: Connection) -> Any:
    """What ``Connection`` hands to ``dialect.do_commit``: its pool-proxied DBAPI
    connection (None once it is closed)."""
    try:
        return conn.connection
    except Exception:
        return None


def _flush_statement(execution_options: Any, info: TableInfo | None) -> bool:
    """True for a statement the unit of work itself emits: SQLAlchemy's persistence layer
    runs them with the mapper's own ``compiled_cache``; a statement a flush *event* runs
    on the flush's connection does not carry it."""
    cache = execution_options.get("compiled_cache") if execution_options else None
    if cache is None:
        return False
    return info is None or cache is info.mapper_cache


def _in_unit_of_work(owner: SessionState) -> bool:
    """True while the owning session runs a flush's own statements."""
    session = owner.session_ref()
    if session is None:
        return False
    ref = owner.flush_context
    return running_flush_of(session, ref() if ref is not None else None)


class EngineEvents:
    """The engine listeners of one tracker."""

    def __init__(
        self,
        *,
        key: str,
        registry: Registry,
        tables: TrackedTables,
        cascades: CascadeGraph,
        threads: ThreadSessions,
        delivery: Delivery,
        owners: weakref.WeakKeyDictionary[Connection, SessionState],
    ) -> None:
        self.key = key
        self.registry = registry
        self.tables = tables
        self.cascades = cascades
        self.threads = threads
        self.delivery = delivery
        self.owners = owners
        #: ``.committing``: this thread's :class:`_Committing`, between the ``commit``
        #: event and the commit hook.
        self._local = threading.local()

    # -- wiring -------------------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        for name, method in ENGINE_EVENTS.items():
            event.listen(engine, name, getattr(self, method))
        hook_commit(engine.dialect, self)

    def detach(self, engine: Engine) -> None:
        for name, method in ENGINE_EVENTS.items():
            listener = getattr(self, method)
            if event.contains(engine, name, listener):
                event.remove(engine, name, listener)
        unhook_commit(engine.dialect, self)

    # -- statements ---------------------------------------------------------------------------
    def on_before_execute(
        self,
        conn: Connection,
        clauseelement: Any,
        multiparams: Any,
        params: Any,
        execution_options: Any,
    ) -> None:
        if not isinstance(clauseelement, dml.UpdateBase):
            if isinstance(clauseelement, TextClause):
                self.on_text(conn, clauseelement.text)
            return
        if not self.registry:
            return
        if is_orm_statement(clauseelement):
            return  # ORM-enabled statement: handled by do_orm_execute
        table = getattr(clauseelement, "table", None)
        info = self.tables.get(table) if table is not None else None
        # a DELETE whose rows the database cascades to tracked rows: read them first
        cascade = (
            isinstance(clauseelement, dml.Delete)
            and table is not None
            and bool(self.cascades.edges(table))
        )
        owner = self.owners.get(conn)
        if owner is not None:
            if _in_unit_of_work(owner) and _flush_statement(execution_options, info):
                # the flush's own statements: after_flush tags the flushed objects, but
                # not the rows the database deletes with them (passive_deletes). Other
                # statements during a flush (a mapper event's Core DML) are tracked below.
                if cascade:
                    rows_params = parameter_rows(multiparams, params)
                    tags, _ = dml_tags(
                        None,
                        self.cascades,
                        clauseelement,
                        rows_params or None,
                        conn.execute,
                        lambda: conn,
                        cascade=True,
                    )
                    self.route(conn, owner, tags)
                return
        elif execution_options:
            cache = execution_options.get("compiled_cache")
            if cache is not None and (info is None or cache is info.mapper_cache):
                return  # an untracked session's flush (or bulk_save_*): not ours
        if info is None and not cascade:
            if owner is not None:
                owner.has_written = True
            return
        rows_params = parameter_rows(multiparams, params)
        tags, ids = dml_tags(
            info,
            self.cascades,
            clauseelement,
            rows_params or None,
            conn.execute,
            lambda: conn,
            cascade=cascade,
        )
        if info is not None and ids and update_needs_reselect(info, clauseelement):
            # the new parents are only known once the statement ran: after_execute
            connection_record(conn, self.key).reselect = Reselect(info, ids, owner)
        self.route(conn, owner, tags)

    def on_text(self, conn: Connection, sql: str) -> None:
        """Textual SQL (``text()``, ``exec_driver_sql``): a write bumps the types of the
        tracked tables it may change (``textual.py``) and counts as a flushed change of
        the owning session (reads bypass, fills dropped, ``invalidate_tags`` deferred)."""
        if not textual.is_write(sql):
            return
        owner = self.owners.get(conn)
        if owner is not None:
            owner.has_written = True
        if not self.registry:
            return
        tags = textual.tags_for(sql, self.tables, conn.dialect.name)
        if tags:
            self.route(conn, owner, tags)

    def route(self, conn: Connection, owner: SessionState | None, tags: set[str]) -> None:
        """Where a Core statement's tags wait for their commit: the owning session's open
        transaction, else (AUTOCOMMIT) until the statement has run, else the connection."""
        session = owner.session_ref() if owner is not None else None
        if owner is not None and session is not None and session.in_transaction():
            self.threads.adopt(owner)
            owner.has_written = True
            if owner.pending.add(tags):
                owner.has_tracked_writes = True
                return
        record = connection_record(conn, self.key)
        if owner is None and is_autocommit(conn):
            # each statement commits by itself: send once it has run (after_execute)
            record.autocommit |= tags
            return
        record.pending.add(tags)

    def on_after_execute(
        self,
        conn: Connection,
        clauseelement: Any,
        multiparams: Any,
        params: Any,
        execution_options: Any,
        result: Any,
    ) -> None:
        record: ConnectionRecord | None = conn.info.get(self.key)  # hot: every execute
        if record is None:
            return
        again = record.reselect
        if again is not None:
            record.reselect = None
            self.route(conn, again.owner, reselect(again.info, again.ids, conn.execute))
        self._send_autocommit(record)

    def on_before_cursor_execute(
        self, conn: Connection, cursor: Any, statement: str, *args: Any
    ) -> None:
        context = args[1] if len(args) > 1 else None
        if getattr(context, "compiled", None) is None:  # Connection.exec_driver_sql()
            self.on_text(conn, statement)

    def on_after_cursor_execute(self, conn: Connection, *args: Any) -> None:
        context = args[3] if len(args) > 3 else None
        if getattr(context, "compiled", None) is not None:
            return  # a compiled statement (maybe one batch of several): after_execute sends
        record = find_record(conn, self.key)
        if record is not None:
            self._send_autocommit(record)  # the driver-level statement is committed

    def _send_autocommit(self, record: ConnectionRecord) -> None:
        if record.autocommit:
            tags, record.autocommit = record.autocommit, set()
            self.delivery.send(tags)  # autocommit: the statement is committed

    # -- transactions ---------------------------------------------------------------------------
    def on_commit(self, conn: Connection) -> None:
        """Before a Core connection's COMMIT: hand its tags to the commit hook, which
        sends them right after the COMMIT; if it does not run, they go out when the
        connection returns to the pool."""
        # Anything pending on the connection is not a session's own (a session keeps its
        # tags in its own levels): Core statements, or a joined session's tags parked for
        # this COMMIT, even if a session has begun on the connection again since.
        record: ConnectionRecord | None = conn.info.get(self.key)  # hot: every COMMIT
        if record is None:
            return
        tags = record.pending.drain()
        if tags:
            record.committed |= tags
            self._local.committing = _Committing(_dbapi(conn), record)

    def on_commit_twophase(self, conn: Connection, xid: Any, is_prepared: bool) -> None:
        """A two-phase COMMIT (``do_commit_twophase``, not wrapped): the tags go out when
        the connection returns to the pool, after it."""
        record = find_record(conn, self.key)
        if record is not None:
            record.committed |= record.pending.drain()

    def after_dbapi_commit(self, dbapi_connection: Any) -> None:
        """The commit hook, right after a DBAPI COMMIT succeeded: deliver its tags."""
        pending: _Committing | None = getattr(self._local, "committing", None)
        if pending is None:
            return
        self._local.committing = None
        if pending.dbapi is not dbapi_connection:
            return  # another connection's COMMIT: that one's own check-in resends
        record = pending.record
        tags, record.committed = record.committed, set()
        if tags:
            try:
                self.delivery.send(tags)
            except Exception:  # never fail a COMMIT that went through: check-in retries
                log.exception("dataroom cache: sending a Core commit's tags failed")
                record.committed |= tags

    def dbapi_commit_failed(self) -> None:
        """The commit hook: the DBAPI COMMIT raised: nothing to send now."""
        self._local.committing = None

    def on_savepoint(self, conn: Connection, name: Any) -> None:
        """A Core SAVEPOINT opens a level, so rolling back to it drops only the tags
        collected since (a session's savepoints keep their own levels; this is for tags
        kept on the connection). SQLAlchemy names the savepoint after this event, so the
        levels are anonymous: a rollback or release applies to the innermost (for an
        outer one rolled back past open inner ones this keeps a few tags too many:
        over-invalidating, never under). Every SAVEPOINT opens one (a session's too), so
        opens and closes stay paired."""
        connection_record(conn, self.key).pending.begin()

    def on_rollback_savepoint(self, conn: Connection, name: Any, context: Any) -> None:
        record = find_record(conn, self.key)
        if record is not None:
            record.pending.rollback()

    def on_release_savepoint(self, conn: Connection, name: Any, context: Any) -> None:
        record = find_record(conn, self.key)
        if record is not None:
            record.pending.release()

    def on_rollback(self, conn: Connection) -> None:
        record = find_record(conn, self.key)
        if record is not None:
            record.pending.drain()
            record.reselect = None
        pending: _Committing | None = getattr(self._local, "committing", None)
        if pending is not None and pending.dbapi is _dbapi(conn):
            self._local.committing = None

    def on_checkin(self, dbapi_conn: Any, pool_record: Any) -> None:
        info = getattr(pool_record, "info", None)
        if not info:
            return
        record: ConnectionRecord | None = info.get(self.key)
        if record is None:
            return
        # Tags still pending here were committed by a path no commit event showed
        # (a two-phase commit, a session that took over the connection): a rollback
        # would have dropped them. Sent now (over-invalidating at worst).
        tags = record.pending.drain()
        record.reselect = None
        if record.committed:
            tags |= record.committed
            record.committed = set()
        if tags:
            self.delivery.send(tags)
