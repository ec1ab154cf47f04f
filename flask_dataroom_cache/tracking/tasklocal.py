"""A value per asyncio task, else per thread: the commit hook's hand-off.

The commit hook hands a COMMIT's tags from the ``commit`` event to ``do_commit``
(``connection.py``); both run in the task that awaits the COMMIT (an ``AsyncSession``
fires its sync events in a greenlet sharing the task's context), and an async driver's
COMMIT awaits, so another task of the loop may commit meanwhile: the hand-off is per task,
never inherited by the tasks it makes (the unit of work a *read* belongs to is
``unitofwork.py``'s, which child tasks do inherit). :class:`TaskLocal` keeps one value per
running task (weakly: a finished task's value goes with it) and falls back to the
thread's when no task runs; the cost on the sync path is one C call
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
