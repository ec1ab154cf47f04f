"""The tracking scenarios on an ``AsyncSession`` (issue 14): the same test bodies, run
through asyncio.

:class:`AsyncEnv` is an :class:`~.conftest.Env` whose ``session`` is a facade over an
``AsyncSession`` made by a tracked ``async_sessionmaker`` on the same database through an
async driver (``sqlite+aiosqlite``, ``postgresql+psycopg`` in async mode). Every call the
test makes runs in ONE long-lived asyncio task (:class:`TaskRunner`, a loop in its own
thread): one task is one unit of work, as one request's task is, so the bypass and
deferral checks (per task) see the session as they would in an async view. The session's
coroutine methods are awaited (``await session.commit()``, ``await session.execute()``);
``env.contents`` is ``aget_or_set`` in that task, its compute reading through the same
session (under SQLAlchemy's greenlet, the session's sync methods: what ``AsyncSession``
itself runs).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import greenlet_spawn

from flask_dataroom_cache import contents_tag, dataroom_tag, get_cache_key
from flask_dataroom_cache.asyncstore import aget_or_set

from .conftest import Env, sqlite_fk

TIMEOUT = 60


def async_url(url: str) -> str:
    """The async driver's URL for the same database."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:") :]
    if url.startswith("postgresql:") or url.startswith("postgresql+psycopg2:"):
        return "postgresql+psycopg:" + url.split(":", 1)[1]
    return url


class TaskRunner:
    """An event loop in a thread, running every job given to :meth:`run` in one task."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.queue: asyncio.Queue[Any] | None = None
        started = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        started.result(TIMEOUT)

    async def _start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        assert self.queue is not None
        with self.app.app_context():  # the cache's module functions find the app
            while True:
                job, done = await self.queue.get()
                if job is None:
                    return
                try:
                    result = job()
                    if inspect.isawaitable(result):
                        result = await result
                except BaseException as exc:
                    done.set_exception(exc)
                else:
                    done.set_result(result)

    def in_task(self) -> bool:
        return threading.current_thread() is self.thread

    def run(self, job: Callable[[], Awaitable[Any] | Any]) -> Any:
        """Run ``job()`` in the task (awaited if it returns an awaitable); its result."""
        assert not self.in_task(), "re-entrant: call the sync session inside the task"
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        assert self.queue is not None
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (job, done))
        return done.result(TIMEOUT)

    def close(self) -> None:
        if self.queue is not None:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (None, None))
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


class _Transaction:
    """A savepoint begun through the facade: ``commit``/``rollback``/``with``."""

    def __init__(self, runner: TaskRunner, tx: Any) -> None:
        self.runner = runner
        self.tx = tx

    def commit(self) -> None:
        self.runner.run(self.tx.commit)

    def rollback(self) -> None:
        self.runner.run(self.tx.rollback)

    def __enter__(self) -> _Transaction:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if self.tx.is_active:
            self.rollback() if exc_type is not None else self.commit()


class _Connection:
    """``session.connection()`` through the facade: ``execute`` awaited."""

    def __init__(self, runner: TaskRunner, conn: Any) -> None:
        self.runner = runner
        self.conn = conn

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self.runner.run(lambda: self.conn.execute(*args, **kwargs))


class SessionFacade:
    """The sync ``Session`` API the scenarios use, run on an ``AsyncSession``: from the
    test's thread, in the runner's task (coroutine methods awaited); inside that task
    (a compute under ``greenlet_spawn``), the wrapped sync session directly."""

    def __init__(self, runner: TaskRunner, session: AsyncSession) -> None:
        self._runner = runner
        self._session = session

    def begin_nested(self) -> _Transaction:
        if self._runner.in_task():
            return self._session.sync_session.begin_nested()  # type: ignore[return-value]

        async def begin() -> Any:
            return await self._session.begin_nested()

        return _Transaction(self._runner, self._runner.run(begin))

    def connection(self) -> Any:
        if self._runner.in_task():
            return self._session.sync_session.connection()
        return _Connection(self._runner, self._runner.run(self._session.connection))

    def __getattr__(self, name: str) -> Any:
        if self._runner.in_task():
            return getattr(self._session.sync_session, name)
        attr = getattr(self._session, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(lambda: attr(*args, **kwargs))

        return call


class AsyncEnv(Env):
    """An :class:`Env` whose session is an ``AsyncSession`` (see the module docstring)."""

    kind = "async"

    def __init__(self, base: Env, url: str) -> None:
        self.__dict__.update(base.__dict__)
        self.engine = create_async_engine(async_url(url))
        sqlite_fk(self.engine.sync_engine)
        maker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.cache.track_session(maker, app=self.app)
        self.runner = TaskRunner(self.app)
        self.async_session = self.runner.run(maker)
        self.facade = SessionFacade(self.runner, self.async_session)

    @property
    def session(self) -> Any:
        return self.facade

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)`` in the session's task (the cache API's per-task checks)."""
        return self.runner.run(lambda: fn(*args, **kwargs))

    def contents(self, room_id: int, folder_id: int | None) -> dict[str, list[str]]:
        scope = folder_id if folder_id is not None else f"root:{room_id}"
        key = get_cache_key("contents", scope, room=room_id)
        tags = [dataroom_tag(room_id), contents_tag(scope)]
        fresh = self.contents_fresh  # a test may have replaced it (a spy)

        def compute() -> Awaitable[dict[str, list[str]]]:
            return greenlet_spawn(fresh, room_id, folder_id)

        return self.runner.run(lambda: aget_or_set(self.store, key, compute, tags=tags))  # type: ignore[no-any-return]

    def contents_fresh(self, room_id: int, folder_id: int | None) -> dict[str, list[str]]:
        if not self.runner.in_task():
            return self.runner.run(
                lambda: greenlet_spawn(Env.contents_fresh, self, room_id, folder_id)
            )  # type: ignore[no-any-return]
        return Env.contents_fresh(self, room_id, folder_id)

    def close(self) -> None:
        async def end() -> None:
            await self.async_session.close()
            await self.engine.dispose()

        try:
            self.runner.run(end)
        finally:
            self.runner.close()


__all__ = ["AsyncEnv", "SessionFacade", "TaskRunner", "async_url", "sa"]
