"""The read side of automatic dependencies on a tracked engine (issue 17).

:class:`ReadListener` (one per tracker) does two things for the computation capturing its
reads in this thread or task (``readcapture.py``; the tracker's own store only):

* ``before_cursor_execute`` on every tracked engine: the statement about to run ->
  :func:`.reads.statement_reads` -> :meth:`~..readcapture.ReadCapture.add` (which reads
  the tokens of its new tags before the statement runs). ``before_cursor_execute`` sees
  everything the engine runs: Core, ORM (its compiled Core statement), lazy loads,
  ``text()`` and ``exec_driver_sql``.
* When a capture opens (``store.capture_starters``): **reads that run no SQL.** What this
  thread's tracked sessions hold in memory (objects in an identity map, loaded
  relationships: ``session.get`` answered from memory, ``g.user`` loaded by a
  ``before_request`` hook) was read before the capture began, at a moment whose tokens
  nobody captured. The computation is isolated from it: every such session is expired
  (``Session.expire_all``), so what the computation reads of it is loaded again by SQL,
  seen here, with its tokens read first. A session holding unflushed changes cannot be
  expired without losing them: the capture is refused instead (such a computation
  would read data no transaction has written).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from .. import readcapture
from .reads import statement_reads
from .sqlexpr import unflushed_groups

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..autotags import ValueColumns
    from ..readcapture import ReadCapture
    from ..store import CacheStore
    from .snapshot import ThreadSessions

__all__ = ["ReadListener"]

UNFLUSHED = "unflushed changes in a session"


class ReadListener:
    """The statement listener and capture starter of one tracker."""

    def __init__(
        self, store: CacheStore, value_columns: ValueColumns, threads: ThreadSessions
    ) -> None:
        self.store = store
        self.value_columns = value_columns
        self.threads = threads
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()

    def attach(self, engine: Engine) -> None:
        if engine not in self._engines:
            self._engines.add(engine)
            event.listen(engine, "before_cursor_execute", self.on_cursor)

    def detach(self) -> None:
        for engine in list(self._engines):
            if event.contains(engine, "before_cursor_execute", self.on_cursor):
                event.remove(engine, "before_cursor_execute", self.on_cursor)
        self._engines = weakref.WeakSet()

    def on_cursor(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        capture = readcapture.current()
        if capture is None or capture.owner is not self.store:
            return
        try:
            compiled = getattr(context, "compiled", None)
            params = getattr(context, "compiled_parameters", None) if compiled is not None else None
            reads = statement_reads(
                compiled,
                params[0] if params else None,
                statement,
                self.value_columns,
                conn.dialect.name,
            )
        except Exception as exc:  # an analysis bug must never fail the query: fail closed
            capture.refuse(f"statement not analysed: {type(exc).__name__}")
            return
        capture.add(reads)

    def on_capture_start(self, capture: ReadCapture) -> None:
        """Isolate the computation from what this thread's sessions hold in memory."""
        for state in self.threads.seen():
            session = state.session_ref()
            if session is None:
                continue
            groups = unflushed_groups(session)
            if groups is not None and any(any(True for _ in g) for g in groups):
                capture.refuse(UNFLUSHED)
                continue
            if len(session.identity_map):
                session.expire_all()
