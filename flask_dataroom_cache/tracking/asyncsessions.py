"""SQLAlchemy's asyncio objects, as the sync objects the tracker listens on.

An ``AsyncSession`` wraps a sync ``Session`` (``.sync_session``) and runs it in a greenlet
inside the awaiting task; an ``AsyncEngine`` wraps a sync ``Engine`` (``.sync_engine``).
SQLAlchemy's events are registered on those sync objects (its asyncio docs, "Using events
with the asyncio extension"), so ``track_session`` turns:

* an ``async_scoped_session`` into its ``async_sessionmaker``;
* an ``async_sessionmaker`` into the ``sessionmaker`` its sessions are made by: the one
  given as ``sync_session_class=`` (SQLAlchemy's documented recipe), else one made here
  for the class it would use (``Session``) and set as its ``sync_session_class``:
  listening on the ``Session`` class itself would track every app. Several apps tracking
  one ``async_sessionmaker`` share that factory (each listens on it with its own
  listeners); the last app's detach restores the original;
* an ``AsyncSession`` into its ``sync_session``;
* an ``AsyncEngine`` (its ``bind``, its ``binds``, ``engines=``) into its ``sync_engine``.

The events then run as they do for sync sessions, in the task that awaits the session
(``unitofwork.py``); the commit hook wraps the sync engine's dialect ``do_commit``, so the
tags go out before ``await session.commit()`` returns.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

__all__ = ["SyncTarget", "sync_engines", "sync_target"]

try:
    from sqlalchemy.ext.asyncio import (
        AsyncEngine,
        AsyncSession,
        async_scoped_session,
        async_sessionmaker,
    )
except ImportError:  # pragma: no cover - SQLAlchemy without its asyncio extension
    AsyncEngine = AsyncSession = async_scoped_session = async_sessionmaker = None  # type: ignore[assignment,misc]


@dataclass
class SyncTarget:
    """What to listen on for one ``track_session`` target, and how to undo the rest."""

    #: The sync ``sessionmaker`` / ``Session`` (or the target as given, if not asyncio).
    target: Any
    #: The sync engines the target is bound to.
    engines: list[Engine] = field(default_factory=list)
    #: Undoes a ``sync_session_class`` set on an ``async_sessionmaker`` (detach).
    undo: Callable[[], None] | None = None


def _is(obj: Any, cls: Any) -> bool:
    return cls is not None and isinstance(obj, cls)


def sync_engines(binds: Iterable[Any]) -> list[Engine]:
    """The sync engines of ``binds`` (``AsyncEngine.sync_engine``; others as they are)."""
    found: list[Engine] = []
    for bind in binds:
        if _is(bind, AsyncEngine):
            bind = bind.sync_engine
        if isinstance(bind, Engine):
            found.append(bind)
    return found


def sync_target(target: Any) -> SyncTarget:
    """The sync object to listen on for ``target`` (unchanged when it is not asyncio)."""
    if isinstance(target, type) and AsyncSession is not None:
        if issubclass(target, AsyncSession):
            raise TypeError(
                "track_session() takes an async_sessionmaker, async_scoped_session or "
                "AsyncSession instance, not a class: listening on a class would track "
                "every app in the process"
            )
        return SyncTarget(target)
    if _is(target, async_scoped_session):
        target = target.session_factory
    if _is(target, AsyncSession):
        # other binds reach the engine listeners when the session begins on them
        return SyncTarget(target.sync_session, sync_engines([target.bind]))
    if not _is(target, async_sessionmaker):
        return SyncTarget(target)
    kw = target.kw
    engines = sync_engines([kw.get("bind"), *(kw.get("binds") or {}).values()])
    with _LOCK:
        installed = _INSTALLED.get(target)
        if installed is not None and kw.get("sync_session_class") is installed.maker:
            # another app tracks it already: share the factory set for the first
            installed.users += 1
            return SyncTarget(installed.maker, engines, _release(target, installed))
        given = kw.get("sync_session_class")
        if isinstance(given, sessionmaker):
            return SyncTarget(given, engines)
        cls = given or target.class_.sync_session_class
        installed = _Installed(sessionmaker(class_=cls), "sync_session_class" in kw, given)
        _INSTALLED[target] = installed
        kw["sync_session_class"] = installed.maker
        return SyncTarget(installed.maker, engines, _release(target, installed))


@dataclass
class _Installed:
    """The ``sessionmaker`` set as an ``async_sessionmaker``'s ``sync_session_class``,
    shared by every app tracking that ``async_sessionmaker``."""

    maker: sessionmaker[Any]
    #: ``sync_session_class`` was in its ``kw`` before (restored to ``given``).
    had: bool
    given: Any
    #: The apps tracking it: the last one to detach restores the original factory.
    users: int = 1


#: Per ``async_sessionmaker`` (weakly: one dropped by its app is forgotten), the factory
#: set on it. Shared by the apps of the process as the ``async_sessionmaker`` is: a
#: second app tracking it listens on the same factory, and the first one's detach must
#: not take it from under the second.
_INSTALLED: weakref.WeakKeyDictionary[Any, _Installed] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _release(target: Any, installed: _Installed) -> Callable[[], None]:
    """One app's detach: the factory is restored when no app tracks ``target`` any more
    (each detach counts once)."""
    released = False

    def undo() -> None:
        nonlocal released
        with _LOCK:
            if released:
                return
            released = True
            installed.users -= 1
            if installed.users > 0:
                return
            if _INSTALLED.get(target) is installed:
                del _INSTALLED[target]
            kw = target.kw
            if kw.get("sync_session_class") is installed.maker:
                if installed.had:
                    kw["sync_session_class"] = installed.given
                else:
                    del kw["sync_session_class"]

    return undo
