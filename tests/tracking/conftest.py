"""Fixtures for tracking tests: an app with Flask-SQLAlchemy + the cache, per test.

Every test here runs on each cache kind (memory, fakeredis, real Redis when REDIS_URL is
set) and each database (SQLite, PostgreSQL when DATABASE_URL is set).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_dataroom_cache import DataRoomCache, contents_tag, dataroom_tag, get_cache_key
from flask_dataroom_cache.autotags import AUTO_PREFIXES
from flask_dataroom_cache.store import CacheStore

from .models import Base, File, Folder, declare


class CountingBackend:
    """Wraps a backend; counts every call by method name."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.invalidated: list[tuple[str, ...]] = []
        self.lock = threading.Lock()
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.calls[name] += 1
                if name == "invalidate":
                    self.invalidated.append(tuple(args[0]))
            return attr(*args, **kwargs)

        return wrapper

    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()
        self.invalidated.clear()

    def all_invalidated(self) -> set[str]:
        """The declared (semantic) tags sent: automatic ones (``~t:`` ...) are left out
        (``auto_invalidated``; tests/tracking/test_auto_tags.py checks them)."""
        return {t for batch in self.invalidated for t in batch if not t.startswith(AUTO_PREFIXES)}

    def auto_invalidated(self) -> set[str]:
        """The automatic tags sent (issue 17)."""
        return {t for batch in self.invalidated for t in batch if t.startswith(AUTO_PREFIXES)}


def sqlite_fk(engine: sa.Engine) -> None:
    """Foreign keys on, a busy timeout, and working SAVEPOINTs.

    pysqlite's own transaction handling defers BEGIN until the first write, so a
    SAVEPOINT issued first *starts* the transaction and its RELEASE *commits* it: a
    released savepoint followed by a rollback would leave its changes committed behind
    SQLAlchemy's back (and behind the tracker's). SQLAlchemy's documented recipe: let
    SQLAlchemy emit BEGIN itself.
    """
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _fk(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                conn.exec_driver_sql("BEGIN")


class Env:
    """One app: ``db``, ``cache``, ``store``, counting ``backend``, view helpers."""

    #: ``"sync"``: ``session`` is Flask-SQLAlchemy's; ``"async"``: ``asyncenv.AsyncEnv``.
    kind = "sync"

    def __init__(self, app: Flask, db: SQLAlchemy, cache: DataRoomCache) -> None:
        self.app = app
        self.db = db
        self.cache = cache
        self.store: CacheStore = cache.state(app).store
        self.backend = CountingBackend(self.store.backend)
        self.store.backend = self.backend  # type: ignore[assignment]

    @property
    def session(self) -> Any:
        return self.db.session

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)`` where the session works (this thread; an async env: its task)."""
        return fn(*args, **kwargs)

    # -- cached views built with the same tag functions ---------------------------------
    def contents(self, room_id: int, folder_id: int | None) -> dict[str, list[str]]:
        """Names of the direct subfolders and files of a folder (or of the room root)."""
        scope = folder_id if folder_id is not None else f"root:{room_id}"
        key = get_cache_key("contents", scope, room=room_id)
        tags = [dataroom_tag(room_id), contents_tag(scope)]
        return self.store.get_or_set(
            key, lambda: self.contents_fresh(room_id, folder_id), tags=tags
        )

    def contents_fresh(self, room_id: int, folder_id: int | None) -> dict[str, list[str]]:
        s = self.session
        fq = sa.select(Folder.name).where(Folder.data_room_id == room_id)
        fi = sa.select(File.name).where(File.data_room_id == room_id)
        if folder_id is None:
            fq, fi = fq.where(Folder.parent_id.is_(None)), fi.where(File.folder_id.is_(None))
        else:
            fq, fi = fq.where(Folder.parent_id == folder_id), fi.where(File.folder_id == folder_id)
        return {
            "folders": sorted(s.scalars(fq).all()),
            "files": sorted(s.scalars(fi).all()),
        }


@pytest.fixture
def make_env(cache_config: dict[str, Any], database_url: str) -> Iterator[Callable[..., Env]]:
    made: list[Env] = []

    def factory(
        order: str = "db-first",
        url: str | None = None,
        before_init: Callable[[SQLAlchemy], None] | None = None,
        **config: Any,
    ) -> Env:
        app = Flask(f"t_{uuid.uuid4().hex[:6]}")
        app.config.update(TESTING=True, **cache_config)
        app.config["SQLALCHEMY_DATABASE_URI"] = url or database_url
        app.config.update(config)
        db = SQLAlchemy()
        cache = DataRoomCache()
        declare(cache)
        if before_init is not None:  # e.g. the app's own session listeners
            before_init(db)
        if order == "db-first":
            db.init_app(app)
            cache.init_app(app)
        else:
            cache.init_app(app)
            db.init_app(app)
        with app.app_context():
            sqlite_fk(db.engine)
            Base.metadata.create_all(db.engine)
        env = Env(app, db, cache)
        made.append(env)
        return env

    yield factory
    for env in made:
        with env.app.app_context():
            env.db.session.remove()
            for engine in env.db.engines.values():
                engine.dispose()


@pytest.fixture
def env(make_env: Callable[..., Env], request: pytest.FixtureRequest) -> Iterator[Env]:
    config: dict[str, Any] = {}
    if request.node.get_closest_marker("auto_tags_off"):  # declared tags only
        config["CACHE_AUTO_TAGS"] = False
    e = make_env(**config)
    with e.app.app_context():
        yield e


@pytest.fixture(params=["sync", "async"])
def any_env(
    request: pytest.FixtureRequest, make_env: Callable[..., Env], database_url: str
) -> Iterator[Env]:
    """:func:`env`, with ``session`` a Flask-SQLAlchemy session or an ``AsyncSession``
    (issue 14): one scenario, both kinds of session."""
    config: dict[str, Any] = {}
    if request.node.get_closest_marker("auto_tags_off"):  # declared tags only
        config["CACHE_AUTO_TAGS"] = False
    e = make_env(**config)
    if request.param == "sync":
        with e.app.app_context():
            yield e
        return
    pytest.importorskip("greenlet")
    pytest.importorskip("aiosqlite" if database_url.startswith("sqlite") else "psycopg")
    from .asyncenv import AsyncEnv

    with e.app.app_context():
        async_env = AsyncEnv(e, database_url)
        try:
            yield async_env
        finally:
            async_env.close()
