"""A value per asyncio task, else per thread: where "this thread's sessions" live.

The store hooks ask about *this unit of work's* sessions (``snapshot.py``), and the commit
hook hands a COMMIT's tags from the ``commit`` event to ``do_commit`` (``connection.py``).
Sync code runs one unit of work per thread, so a ``threading.local`` was enough; asyncio
runs many tasks in one thread, and an ``AsyncSession`` fires its (sync) events inside the
task that awaits it (SQLAlchemy runs them in a greenlet that shares the task's context).
:class:`TaskLocal` keeps one value per running task (weakly: a finished task's value goes
with it) and falls back to the thread's when no task runs: sync code keeps exactly its
per-thread semantics, and the cost on that path is one C call
(``asyncio._get_running_loop``, public in ``asyncio.events.__all__``).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Generic, TypeVar

__all__ = ["TaskLocal", "current_task"]

T = TypeVar("T")

_running_loop = asyncio._get_running_loop


def current_task() -> asyncio.Task[object] | None:
    """The asyncio task running in this thread, or ``None`` (no loop, or a callback)."""
    if _running_loop() is None:
        return None
    return asyncio.current_task()


class TaskLocal(Generic[T]):
    """One value per asyncio task, else per thread (``None`` until set)."""

    __slots__ = ("_tasks", "_thread")

    def __init__(self) -> None:
        self._thread = threading.local()
        self._tasks: weakref.WeakKeyDictionary[asyncio.Task[object], T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T | None:
        if _running_loop() is not None:
            task = asyncio.current_task()
            if task is not None:
                return self._tasks.get(task)
        return getattr(self._thread, "value", None)

    def set(self, value: T | None) -> None:
        task = current_task()
        if task is None:
            self._thread.value = value
        elif value is None:
            self._tasks.pop(task, None)
        else:
            self._tasks[task] = value
