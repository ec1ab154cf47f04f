"""A connection's own pending tags and its transaction events; the per-connection record.

Tags of Core statements no session owns (``core.py``), and a joined session's tags parked
for an outer COMMIT, wait on the connection in a typed :class:`ConnectionRecord`, kept in
the DBAPI connection's ``info`` under the tracker's key (it outlives one ``Connection``
object). Listeners on each tracked engine (and its pool)::

    savepoint, release_savepoint, rollback_savepoint
                            the record's pending levels (``pending.py``)
    rollback                everything pending dropped
    commit                  the record's tags (and the owning session's root tags) handed
                            to the commit hook (``commit_hook.py``), which calls
                            :meth:`ConnectionEvents.after_dbapi_commit` right after the
                            DBAPI COMMIT: they go out then (delivery.py)
    commit_twophase, checkin
                            what no commit hook saw goes out when the connection returns
                            to the pool (over-invalidating at worst)
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from .commit_hook import hook_commit, unhook_commit
from .pending import PendingTags
from .tasklocal import TaskLocal

if TYPE_CHECKING:
    from .autostatements import AfterUpdate
    from .delivery import Delivery
    from .rows import TableInfo
    from .session import SessionState

__all__ = [
    "TRANSACTION_EVENTS",
    "ConnectionEvents",
    "ConnectionRecord",
    "Reselect",
    "connection_record",
    "find_record",
]

log = logging.getLogger("flask_dataroom_cache")

#: Engine (and pool) event -> listener method of :class:`ConnectionEvents`, in the order
#: attached.
TRANSACTION_EVENTS = {
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
    #: A DDL statement is running (``after_execute`` checks whether it committed itself).
    ran_ddl: bool = False
    #: An UPDATE's rows to read again once it ran, for automatic tags
    #: (``autostatements.py``; set by ``before_execute``, used by ``after_execute``).
    auto_after: AfterUpdate | None = None


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
    #: The session whose root transaction this COMMIT ends (its root tags go out too).
    session: SessionState | None
    #: ``record.committed`` before this COMMIT's tags joined it (tags of an earlier
    #: COMMIT whose delivery failed): what stays if the database refuses this one.
    earlier: set[str]


def _dbapi(conn: Connection) -> Any:
    """What ``Connection`` hands to ``dialect.do_commit``: its pool-proxied DBAPI
    connection (None once it is closed)."""
    try:
        return conn.connection
    except Exception:
        return None


class ConnectionEvents:
    """The transaction listeners of one tracker on its engines."""

    def __init__(
        self,
        *,
        key: str,
        delivery: Delivery,
        owners: weakref.WeakKeyDictionary[Connection, SessionState],
    ) -> None:
        self.key = key
        self.delivery = delivery
        self.owners = owners
        #: This thread's (asyncio task's) :class:`_Committing`, between the ``commit``
        #: event and the commit hook: an async driver's COMMIT awaits, and another task
        #: of the loop may commit meanwhile.
        self._committing: TaskLocal[_Committing] = TaskLocal()

    def attach(self, engine: Engine) -> None:
        for name, method in TRANSACTION_EVENTS.items():
            event.listen(engine, name, getattr(self, method))
        hook_commit(engine.dialect, self)

    def detach(self, engine: Engine) -> None:
        for name, method in TRANSACTION_EVENTS.items():
            listener = getattr(self, method)
            if event.contains(engine, name, listener):
                event.remove(engine, name, listener)
        unhook_commit(engine.dialect, self)

    def on_commit(self, conn: Connection) -> None:
        """Before a connection's COMMIT: hand its tags to the commit hook, which sends
        them right after the COMMIT; if it does not run, they go out when the connection
        returns to the pool.

        The tags of a tracked session committing its root transaction on this connection
        go out there too (not parked: a COMMIT that fails must send nothing), so they are
        delivered before SQLAlchemy dispatches ``after_commit`` to any listener."""
        # Anything pending on the connection is not a session's own (a session keeps its
        # tags in its own levels): Core statements, or a joined session's tags parked for
        # this COMMIT, even if a session has begun on the connection again since.
        record: ConnectionRecord | None = conn.info.get(self.key)  # hot: every COMMIT
        tags = record.pending.drain() if record is not None else None
        earlier: set[str] = set()
        if tags:
            assert record is not None
            earlier = record.committed
            record.committed = earlier | tags
        owner = self.owners.get(conn)
        if owner is not None and not (owner.owned and owner.pending):
            owner = None
        if tags or owner is not None:
            if record is None:
                record = connection_record(conn, self.key)
            self._committing.set(_Committing(_dbapi(conn), record, owner, earlier))

    def on_commit_twophase(self, conn: Connection, xid: Any, is_prepared: bool) -> None:
        """A two-phase COMMIT (``do_commit_twophase``, not wrapped): the tags go out when
        the connection returns to the pool, after it."""
        record = find_record(conn, self.key)
        if record is not None:
            record.committed |= record.pending.drain()

    def after_dbapi_commit(self, dbapi_connection: Any) -> None:
        """The commit hook, right after a DBAPI COMMIT succeeded: deliver its tags."""
        pending = self._committing.get()
        if pending is None:
            return
        self._committing.set(None)
        if pending.dbapi is not dbapi_connection:
            return  # another connection's COMMIT: that one's own check-in resends
        record = pending.record
        tags, record.committed = record.committed, set()
        owner = pending.session
        if owner is not None and owner.session_ref() is not None:
            own = owner.pending.commit()
            if own:
                owner.delivered = own if owner.delivered is None else owner.delivered | own
                tags |= own
        if tags:
            try:
                self.delivery.send(tags, "commit")
            except Exception:  # never fail a COMMIT that went through: check-in retries
                log.exception("dataroom cache: sending a Core commit's tags failed")
                record.committed |= tags

    def dbapi_commit_failed(self, dbapi_connection: Any, in_doubt: bool) -> None:
        """The commit hook: the DBAPI COMMIT raised.

        Refused by the database (``in_doubt`` False: an ``IntegrityError``, a deferred
        constraint): the transaction rolled back, so its tags are dropped (tags of an
        earlier COMMIT still waiting stay for the check-in). Anything else (a lost
        connection, a timeout) leaves the COMMIT in doubt: the server may have committed
        before the error reached us, so its tags and the session's are sent now,
        over-invalidating if it did not (never stale: promise 1)."""
        pending = self._committing.get()
        self._committing.set(None)
        if pending is None or pending.dbapi is not dbapi_connection:
            return
        record = pending.record
        if not in_doubt:
            record.committed = pending.earlier
            return
        tags, record.committed = record.committed, set()
        owner = pending.session
        if owner is not None and owner.session_ref() is not None:
            tags |= owner.pending.take_all()
        if tags:
            try:
                self.delivery.send(tags, "commit")
            except Exception:
                log.exception("dataroom cache: sending an in-doubt commit's tags failed")
                record.committed |= tags

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
            record.auto_after = None
            record.ran_ddl = False
        pending = self._committing.get()
        if pending is not None and pending.dbapi is _dbapi(conn):
            self._committing.set(None)

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
        record.ran_ddl = False
        if record.committed:
            tags |= record.committed
            record.committed = set()
        if tags:
            self.delivery.send(tags, "commit")
