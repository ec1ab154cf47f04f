"""The unit of work a cache read belongs to: where "this thread's sessions" live.

The store hooks ask about *this unit of work's* tracked sessions (``snapshot.py``): a
session with uncommitted changes makes the reads of its unit bypass the cache. Sync code
runs one unit of work per thread. Asyncio runs many units in one thread, and an
``AsyncSession`` fires its (sync) events in the task that awaits it (SQLAlchemy runs them
in a greenlet sharing the task's ``contextvars`` context). A task is not a unit on its
own, though: a task made by the one holding uncommitted changes (``asyncio.gather``,
``create_task``, a ``TaskGroup``, ``wait_for`` on Python 3.11) works for it, and may read
through its session.

So a unit is a :class:`Unit` record, made when a transaction begins and kept in a
``ContextVar`` (inside a task) or a ``threading.local`` (outside any task: the sync
per-thread rule, unchanged):

* **Child tasks inherit** the record of the task that made them (asyncio copies the
  context into every new task): the same mutable record, so they see the parent's
  sessions, including those whose transactions begin after the child was made.
* **A child that begins a transaction** gets a record of its own, set in its own
  context, chained to the inherited one (:attr:`Unit.parent`): it sees its sessions and
  its parent's; the parent and its siblings do not see the child's.
* **One loop**: a record belongs to the event loop it was made in. asgiref copies a
  context from the thread it runs an async view for, and back into it when the view
  returns; a record found in another loop's context is ignored, so one request's
  records never chain onto the next one's. (What an async view leaves open is handed to
  its request thread explicitly: ``ThreadSessions.hand_over``.)
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Collection
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import SessionState

__all__ = ["Unit", "Units"]

_running_loop = asyncio._get_running_loop  # public: asyncio.events.__all__
_current_task = asyncio.current_task


def _dead() -> None:
    return None


class Unit:
    """One unit of work: the tracked sessions with an open transaction it began."""

    __slots__ = ("loop", "parent", "sessions", "task")

    def __init__(
        self,
        task: asyncio.Task[object] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        parent: Unit | None = None,
    ) -> None:
        #: The sessions (their tracking states) whose transaction began in this unit.
        self.sessions: weakref.WeakSet[SessionState] = weakref.WeakSet()
        #: The unit of the task that made this one's task (its sessions are seen here).
        self.parent = parent
        #: The task that owns this record (weakly; ``None``: a thread's record).
        self.task: Callable[[], asyncio.Task[object] | None] = (
            weakref.ref(task) if task is not None else _dead
        )
        #: The loop it belongs to (weakly; a thread's record: ``None``).
        self.loop: weakref.ref[asyncio.AbstractEventLoop] | None = (
            weakref.ref(loop) if loop is not None else None
        )

    def states(self) -> Collection[SessionState]:
        """The sessions of this unit and of the units it was made in."""
        if self.parent is None:
            return self.sessions
        return [*self.sessions, *self.parent.states()]

    def sees(self, other: Unit) -> bool:
        """True if ``other`` is this unit or one it was made in."""
        unit: Unit | None = self
        while unit is not None:
            if unit is other:
                return True
            unit = unit.parent
        return False


class Units:
    """Per tracker: the current :class:`Unit` of this task (else of this thread)."""

    __slots__ = ("_thread", "_var")

    def __init__(self) -> None:
        self._thread = threading.local()
        self._var: ContextVar[Unit | None] = ContextVar("dataroom_cache_unit", default=None)

    def current(self) -> Unit | None:
        """This task's unit (its own, else inherited), else this thread's; ``None``: no
        transaction began in it. Every cache read asks (one C call outside a loop)."""
        loop = _running_loop()
        if loop is not None and _current_task(loop) is not None:
            unit = self._var.get()
            if unit is None or unit.loop is None or unit.loop() is not loop:
                return None
            return unit
        return getattr(self._thread, "unit", None)

    def own(self) -> Unit:
        """This task's (thread's) own unit, made if it has none: a task running with an
        inherited unit gets one of its own, chained to it, set in its own context."""
        loop = _running_loop()
        task = _current_task(loop) if loop is not None else None
        if task is None:
            unit: Unit | None = getattr(self._thread, "unit", None)
            if unit is None:
                unit = self._thread.unit = Unit()
            return unit
        unit = self._var.get()
        if unit is not None:
            if unit.loop is None or unit.loop() is not loop:
                unit = None  # another loop's (copied by asgiref): not this one's
            elif unit.task() is task:
                return unit
        mine = Unit(task, loop, unit)
        self._var.set(mine)
        return mine
