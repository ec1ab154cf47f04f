"""Core statements on a tracked engine -> tags, routed to where they wait for the commit.

Listeners on each tracked engine::

    before_execute          Core insert/update/delete on a tracked table or an association
                            table (or a DELETE the database cascades to one) -> tags
                            (``statements.py``); textual SQL -> ``textual.py``; DDL ->
                            the epoch (``ddl.py``)
    before_cursor_execute   ``exec_driver_sql`` (no before_execute): textual SQL
    after_execute, after_cursor_execute
                            an UPDATE's new parents re-read; an AUTOCOMMIT statement's
                            tags delivered (it committed itself), and a DDL statement's
                            that committed itself

Where the tags go (:meth:`CoreStatements.route`): into the pending tags of the session
that owns the connection (its transaction commits them), else onto the connection's own
record (``connection.py``) until its COMMIT, or, on an AUTOCOMMIT connection, out as soon
as the statement has run. The unit of work's own statements are left to the flush
(``flush.py``), except the rows the database deletes with them.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import dml
from sqlalchemy.sql.elements import TextClause

from ..tags import EPOCH_TAG
from . import ddl, textual
from .autocascades import cascade_tags, has_cascades
from .connection import ConnectionRecord, Reselect, connection_record, find_record
from .sqlexpr import is_autocommit, run_by_orm_session, running_flush_of
from .statements import (
    dml_tags,
    parameter_rows,
    reselect,
    rows_condition,
    update_needs_reselect,
)

if TYPE_CHECKING:
    from ..rules import Registry
    from .autostatements import AutoStatements
    from .cascades import CascadeGraph
    from .delivery import Delivery
    from .rows import TableInfo, TrackedTables
    from .session import SessionState
    from .snapshot import ThreadSessions

__all__ = ["STATEMENT_EVENTS", "CoreStatements"]

#: Engine event -> listener method of :class:`CoreStatements`, in the order attached.
STATEMENT_EVENTS = {
    "before_execute": "on_before_execute",
    "after_execute": "on_after_execute",
    # exec_driver_sql() skips before/after_execute: only the cursor events see it
    "before_cursor_execute": "on_before_cursor_execute",
    "after_cursor_execute": "on_after_cursor_execute",
}


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


class CoreStatements:
    """The statement listeners of one tracker on its engines."""

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
        auto: AutoStatements | None = None,
    ) -> None:
        #: Automatic tags (``autostatements.py``); None when ``CACHE_AUTO_TAGS`` is off.
        self.auto = auto
        self.key = key
        self.registry = registry
        self.tables = tables
        self.cascades = cascades
        self.threads = threads
        self.delivery = delivery
        self.owners = owners

    def attach(self, engine: Engine) -> None:
        for name, method in STATEMENT_EVENTS.items():
            event.listen(engine, name, getattr(self, method))

    def detach(self, engine: Engine) -> None:
        for name, method in STATEMENT_EVENTS.items():
            listener = getattr(self, method)
            if event.contains(engine, name, listener):
                event.remove(engine, name, listener)

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
            elif ddl.is_ddl_element(clauseelement):
                self.on_ddl(conn)
            return
        if self.auto is not None:
            self._auto_before(conn, clauseelement, multiparams, params, execution_options)
        if not self.registry:
            return
        if run_by_orm_session(clauseelement, execution_options):
            return  # an ORM-enabled statement a Session runs: handled by do_orm_execute
        table = getattr(clauseelement, "table", None)
        info = self.tables.get(table) if table is not None else None
        # an association table: its rows link tracked rows (secondary DML of a flush too)
        assoc = self.tables.association(table) if info is None and table is not None else None
        # a DELETE whose rows the database cascades to tracked rows: read them first
        cascade = (
            isinstance(clauseelement, dml.Delete)
            and table is not None
            and bool(self.cascades.edges(table))
        )
        owner = self.owners.get(conn)
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
                    rows_params = parameter_rows(multiparams, params)
                    tags, _ = dml_tags(
                        None,
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
        if info is None and not cascade and assoc is None:
            if owner is not None:
                owner.has_written = True
            return
        rows_params = parameter_rows(multiparams, params)
        tags, ids = dml_tags(
            info,
            assoc,
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

    def _own_flush(self, conn: Connection, execution_options: Any) -> bool:
        """A statement of a tracked session's unit of work on a mapped table (its objects
        are tagged from their history, ``autoflush.py``)."""
        owner = self.owners.get(conn)
        return (
            owner is not None
            and bool(execution_options)
            and execution_options.get("compiled_cache") is not None
            and _in_unit_of_work(owner)
        )

    def _auto_before(
        self, conn: Connection, stmt: Any, multiparams: Any, params: Any, options: Any
    ) -> None:
        """Automatic tags of an UPDATE / DELETE about to run (``autostatements.py``); the
        flush's own DELETE: the rows the database cascades it to."""
        auto = self.auto
        assert auto is not None
        if isinstance(stmt, dml.Insert):
            return  # after it ran: on_after_execute
        rows_params = parameter_rows(multiparams, params)
        if self._own_flush(conn, options):
            table = getattr(stmt, "table", None)
            if isinstance(stmt, dml.Delete) and isinstance(table, sa.Table) and has_cascades(table):
                tags: set[str] = set()
                cond = rows_condition(table, stmt.whereclause, rows_params or None)
                cascade_tags(auto.auto, table, cond, conn.execute, tags)
                self.route(conn, self.owners.get(conn), tags)
            return
        tags, after = auto.before(stmt, rows_params, conn.execute)
        if after is not None:
            connection_record(conn, self.key).auto_after = after
        if tags:
            self.route(conn, self.owners.get(conn), tags)

    def _auto_after(
        self, conn: Connection, stmt: Any, options: Any, result: Any
    ) -> None:
        auto = self.auto
        assert auto is not None
        record = find_record(conn, self.key)
        after = record.auto_after if record is not None else None
        tags: set[str] | None = None
        if after is not None:
            assert record is not None
            record.auto_after = None
            tags = auto.after_update(after, conn.execute)
        elif isinstance(stmt, dml.Insert) and not self._own_flush(conn, options):
            tags = auto.inserted(stmt, result)
        if tags:
            self.route(conn, self.owners.get(conn), tags)

    def on_text(self, conn: Connection, sql: str) -> None:
        """Textual SQL (``text()``, ``exec_driver_sql``): a write bumps the types of the
        tracked tables it may change (``textual.py``) and counts as a flushed change of
        the owning session (reads bypass, fills dropped, ``invalidate_tags`` deferred)."""
        if not textual.is_write(sql):
            if ddl.is_ddl_text(sql):
                self.on_ddl(conn)
            elif self.auto is not None and textual.is_call(sql):
                owner = self.owners.get(conn)
                if owner is not None:
                    owner.has_written = True
                self.route(conn, owner, {EPOCH_TAG})  # a procedure may write anything
            return
        owner = self.owners.get(conn)
        if owner is not None:
            owner.has_written = True
        if self.auto is not None:
            self.route(conn, owner, textual.auto_tags_for(sql, conn.dialect.name))
        if not self.registry:
            return
        tags = textual.tags_for(sql, self.tables, conn.dialect.name)
        if tags:
            self.route(conn, owner, tags)

    def on_ddl(self, conn: Connection) -> None:
        """A schema change (``ddl.py``): the namespace epoch, routed like a Core
        statement's tags (sent at the commit, dropped by a rollback); the session treats
        it as a flushed change. Marked on the connection so that, once it ran, a DDL
        statement that committed by itself is sent at once too (:meth:`_after_ddl`)."""
        owner = self.owners.get(conn)
        if owner is not None:
            owner.has_written = True
        self.route(conn, owner, {EPOCH_TAG})
        connection_record(conn, self.key).ran_ddl = True

    def _after_ddl(self, conn: Connection, record: ConnectionRecord) -> None:
        # AUTOCOMMIT: sent already; else the pending copy still goes out at the commit
        if record.ran_ddl:
            record.ran_ddl = False
            if not is_autocommit(conn) and ddl.commits_itself(conn):
                self.delivery.send((EPOCH_TAG,), "ddl")

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
        if self.auto is not None and isinstance(clauseelement, dml.UpdateBase):
            self._auto_after(conn, clauseelement, execution_options, result)
        record: ConnectionRecord | None = conn.info.get(self.key)  # hot: every execute
        if record is None:
            return
        again = record.reselect
        if again is not None:
            record.reselect = None
            self.route(conn, again.owner, reselect(again.info, again.ids, conn.execute))
        if record.autocommit:  # (checked here: every statement passes)
            self._send_autocommit(record)
        if record.ran_ddl:
            self._after_ddl(conn, record)

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
            if record.autocommit:
                self._send_autocommit(record)  # the driver-level statement is committed
            if record.ran_ddl:
                self._after_ddl(conn, record)

    def _send_autocommit(self, record: ConnectionRecord) -> None:
        if record.autocommit:
            tags, record.autocommit = record.autocommit, set()
            self.delivery.send(tags, "autocommit")  # autocommit: the statement is committed

