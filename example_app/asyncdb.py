"""The example app's async database access: an ``AsyncEngine`` on the same database as
Flask-SQLAlchemy's (``sqlite+aiosqlite``, ``postgresql+psycopg`` in async mode) and a
tracked ``async_sessionmaker`` (``cache.track_session``): commits through it invalidate
like Flask-SQLAlchemy's.

``NullPool``: Flask runs each async view in an event loop of its own (asgiref), and an
async driver's connection belongs to the loop that opened it; a pool would hand the next
request's loop a connection of a loop that is gone. So each ``async with sessions()``
opens its own connection (docs/async.md, "what it costs").
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from .extensions import cache

__all__ = ["AsyncDatabase", "async_url", "init_app", "sessions"]

EXTENSION_KEY = "example_async_db"


@dataclass
class AsyncDatabase:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


def async_url(url: str) -> str:
    """The async driver's URL of a database (``sqlite://`` -> ``sqlite+aiosqlite://``;
    ``postgresql+psycopg://`` works in async mode as it is)."""
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def init_app(app: Flask) -> None:
    """Build the app's async engine and tracked session factory (after ``cache.init_app``)."""
    engine = create_async_engine(
        async_url(app.config["SQLALCHEMY_DATABASE_URI"]), poolclass=NullPool
    )
    maker = async_sessionmaker(engine, expire_on_commit=False)
    cache.track_session(maker, app=app)
    app.extensions[EXTENSION_KEY] = AsyncDatabase(engine, maker)


def sessions() -> async_sessionmaker[AsyncSession]:
    """The current app's tracked ``async_sessionmaker``."""
    db: AsyncDatabase = current_app.extensions[EXTENSION_KEY]
    return db.sessions
