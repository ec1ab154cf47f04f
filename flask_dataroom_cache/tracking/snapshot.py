"""When this thread must not use the cache, and when an invalidation waits for the commit.

The store asks three questions of the tracker (its hooks), answered here from this
thread's tracked sessions (:class:`ThreadSessions`: registered by ``session.py`` when a
transaction begins, dropped when it ends, handed over between threads). "This thread" is
this unit of work (``unitofwork.py``): inside a running event loop, the task and the
tasks it made (they inherit its sessions); two unrelated tasks of one loop are two units
of work.

* :meth:`SnapshotRules.must_bypass` (``store.bypass_checks``): reads skip the cache and
  fills are dropped while a session holds uncommitted tracked changes, flushed or not
  (DESIGN.md promise 3), and (the snapshot rule) while its database transaction began
  before the latest commit-invalidation this process sent: what it reads may predate
  that commit, yet would be stamped with the new tag versions.
* :meth:`SnapshotRules.refuse_fill` (``store.fill_checks``): the snapshot rule across
  processes. A fill stamped with a tag token that another process made after this
  thread's transaction began (less ``CACHE_SNAPSHOT_CLOCK_SKEW_MS``) is dropped; tokens
  carry their creation time (``backends/base.py``) and this process's own nonces.
* :meth:`SnapshotRules.defer` (``store.deferrers``): ``invalidate_tags`` while a session
  has an open transaction with changes joins that transaction's pending tags (it follows
  its savepoints, commit and rollback); otherwise it is delivered now.
* :meth:`SnapshotRules.must_not_wait` (``store.wait_checks``): a thread holding an open
  SQLite transaction must not wait for another thread's (or process's) computation of a
  key: its lock may be what that computation waits for.

The commit sequence (:attr:`SnapshotRules.seq`) is bumped before every delivery
(``delivery.py``) and every immediate invalidation; a session records it when its
database transaction begins.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from ..backends.base import token_time
from ..rules import Registry
from ..store import SNAPSHOT, UNCOMMITTED
from .sqlexpr import unflushed_groups
from .tasklocal import TaskLocal
from .unitofwork import Units

if TYPE_CHECKING:
    from .session import SessionState

__all__ = ["SnapshotRules", "ThreadSessions", "backend_nonces"]


def backend_nonces(backend: Any) -> tuple[str, ...]:
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


class ThreadSessions:
    """Per unit of work (a thread, or an asyncio task and the tasks it made: see
    ``unitofwork.py``), the tracked sessions with an open transaction (one tracker's)."""

    def __init__(self) -> None:
        #: The current :class:`~.unitofwork.Unit` of this task, else of this thread.
        self.units = Units()
        #: Every tracked session that began a transaction here and is still alive (the
        #: read capture isolates computations from their identity maps: ``capture.py``).
        self.seen_local: TaskLocal[weakref.WeakSet[SessionState]] = TaskLocal()

    def current(self) -> Collection[SessionState]:
        """The sessions this thread's (task's) reads must consider."""
        unit = self.units.current()
        return () if unit is None else unit.states()

    def register(self, state: SessionState) -> None:
        """``state`` began a transaction in this thread (task)."""
        unit = self.units.own()
        unit.sessions.add(state)
        state.listed_in = unit
        seen = self.seen_local.get()
        if seen is None:
            seen = weakref.WeakSet()
            self.seen_local.set(seen)
        seen.add(state)

    def seen(self) -> list[SessionState]:
        """The tracked sessions that ever began a transaction in this thread and are
        still alive (their identity maps may hold what a computation reads without SQL)."""
        seen = self.seen_local.get()
        return list(seen) if seen else []

    def adopt(self, state: SessionState) -> None:
        """A session used by another thread (task) than the one that began its
        transaction (handed over, or awaited by another task): its state moves to this
        one's, where the bypass, fill and deferral checks look. A session of a unit this
        one was made in (a child task using its parent's session) stays where it is:
        the parent keeps seeing it."""
        listed = state.listed_in
        if listed is None:
            return
        current = self.units.current()
        if current is not None and current.sees(listed):
            return
        listed.sessions.discard(state)
        self.register(state)

    def hand_over(self) -> Callable[[], None]:
        """``store.handovers``: run in a thread that worked for another (an async view in
        asgiref's loop thread) as it ends; the other thread calls the result to adopt the
        sessions this one tracks (a flushed, uncommitted change keeps its fills out)."""
        states = list(self.current())

        def adopt() -> None:
            for state in states:
                self.adopt(state)

        return adopt

    def unregister(self, state: SessionState) -> None:
        """``state``'s transaction ended."""
        if state.listed_in is not None:
            state.listed_in.sessions.discard(state)
            state.listed_in = None


class SnapshotRules:
    """The store hooks of one tracker, and its commit sequence."""

    def __init__(
        self, registry: Registry, threads: ThreadSessions, skew: float, nonces: tuple[str, ...]
    ) -> None:
        self.registry = registry
        #: This thread's (task's) tracked sessions (every cache read asks
        #: :meth:`must_bypass`)
        self._current = threads.units.current
        #: Allowed clock disagreement between processes, in seconds
        #: (``CACHE_SNAPSHOT_CLOCK_SKEW_MS``).
        self.skew = skew
        #: This process's token nonces: its own tokens are left to the commit sequence.
        self.own_nonces = nonces
        #: Bumped before every delivery: a transaction that began at a lower value may
        #: have read data older than a commit whose invalidation went out since.
        self.seq = 0
        self._lock = threading.Lock()

    def bump(self) -> None:
        """An invalidation is about to be delivered: open transactions are now older."""
        with self._lock:
            self.seq += 1

    def must_not_wait(self) -> bool:
        """True while a tracked session of this thread (or task) holds an open transaction
        on a SQLite connection. Its shared lock keeps a writer from committing, and a
        writer waiting to commit keeps new readers out: a thread computing a key this one
        waited for (single flight, ``lock=True``) could be waiting on this very
        transaction, so this thread computes instead of waiting. (PostgreSQL readers
        block no one.)"""
        unit = self._current()
        if unit is None:
            return False
        for state in unit.states():
            for conn in state.connections:
                if conn.dialect.name == "sqlite" and conn.in_transaction():
                    return True
        return False

    def must_bypass(self) -> str | None:
        """Why this thread's (or task's) reads and fills must skip the cache now (``store.
        UNCOMMITTED`` or ``store.SNAPSHOT``), or None (a ``store.bypass_checks`` hook)."""
        unit = self._current()
        if unit is None:
            return None
        states = unit.states()
        if not states:
            return None
        seq = self.seq
        for state in states:
            if state.has_tracked_writes:
                return UNCOMMITTED
            if state.begin_seq is not None and state.begin_seq < seq:
                return SNAPSHOT
            if self._unflushed(state):
                return UNCOMMITTED
        return None

    def _unflushed(self, state: SessionState) -> bool:
        """Changes to tracked objects not flushed yet: a compute reading them from the
        session's memory (``session.get`` of a loaded object runs no SQL, so no autoflush)
        would cache a value no transaction has written. Empty collections: the usual case."""
        session = state.session_ref()
        if session is None:
            return False
        groups = unflushed_groups(session)
        if groups is None:
            return False
        rule_for = self.registry.rule_for
        for group in groups:
            for instance_state in group:
                if rule_for(instance_state.class_) is not None:
                    return True
        return False

    def refuse_fill(self, versions: Sequence[str]) -> bool:
        """The snapshot rule across processes: drop a fill stamped with a token that
        another process made after this thread's open database transaction began (minus
        the allowed clock skew): the value may come from a snapshot older than the change
        the token stands for. Tokens this process made are covered exactly by the commit
        sequence (:meth:`must_bypass`), so a tag created by this very read never refuses."""
        unit = self._current()
        if unit is None:
            return False
        states = unit.states()
        if not states:
            return False
        began = min((s.began_at for s in states if s.began_at is not None), default=None)
        if began is None:
            return False
        limit = began - self.skew - 0.001  # token times are whole milliseconds
        own = self.own_nonces
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
        """Keep ``tags`` for the commit of this thread's open transaction with changes
        (True); else note an immediate delivery (False: the store sends them now)."""
        unit = self._current()
        if unit is not None:
            for state in unit.states():
                session = state.session_ref()
                if session is None or not session.in_transaction():
                    continue
                has_changes = (
                    state.has_written
                    or bool(state.pending)
                    or bool(session.new or session.deleted or session.dirty)
                )
                if has_changes and state.pending.add(tags):
                    return True
        self.bump()  # delivered now: readers with older snapshots must not fill
        return False
