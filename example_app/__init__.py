"""The example Data Room backend: Flask + Flask-SQLAlchemy + flask-dataroom-cache.

``create_app(config=None)`` is the application factory (``flask --app example_app ...`` and
``gunicorn 'example_app:create_app()'`` both use it). Configuration, first match wins:

* ``config`` passed to ``create_app`` (tests);
* the environment: ``DATABASE_URL`` (default: a SQLite file in the instance folder),
  ``REDIS_URL`` (default: none, an in-process memory cache), ``STORAGE_DIR`` (default:
  ``instance/storage``), ``MAX_CONTENT_LENGTH`` (bytes, default 32 MiB),
  ``EXAMPLE_AUTO_TAGS=1`` (every cached view drops its declared tags and depends only on
  what it reads: automatic dependencies), and every ``CACHE_*`` setting of the extension.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import models  # noqa: F401  (declares the tracked models before init_app)
from .extensions import cache, db

__all__ = ["cache", "create_app", "db"]

DEFAULT_MAX_CONTENT_LENGTH = 32 * 1024 * 1024


def normalize_database_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` use psycopg 3 (the driver we install)."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """SQLite enforces foreign keys (and so ON DELETE CASCADE) only when asked, per connection."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    overrides = dict(config or {})
    env = os.environ

    database_url = (
        overrides.pop("DATABASE_URL", None)
        or overrides.get("SQLALCHEMY_DATABASE_URI")
        or env.get("DATABASE_URL")
        or "sqlite:///" + os.path.join(app.instance_path, "dataroom.db")
    )
    app.config.update(
        SQLALCHEMY_DATABASE_URI=normalize_database_url(database_url),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        STORAGE_DIR=env.get("STORAGE_DIR") or os.path.join(app.instance_path, "storage"),
        MAX_CONTENT_LENGTH=int(env.get("MAX_CONTENT_LENGTH") or DEFAULT_MAX_CONTENT_LENGTH),
        REDIS_URL=env.get("REDIS_URL") or None,
        # every view on automatic dependencies only (its declared tags dropped): issue 17
        EXAMPLE_AUTO_TAGS=env.get("EXAMPLE_AUTO_TAGS", "") in ("1", "true", "yes"),
    )
    app.config.update(overrides)
    app.config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(
        app.config["SQLALCHEMY_DATABASE_URI"]
    )
    os.makedirs(app.config["STORAGE_DIR"], exist_ok=True)

    # Database first, then the cache: the cache's tracking attaches to Flask-SQLAlchemy's
    # session when it is initialised.
    db.init_app(app)
    cache.init_app(app)
    from . import asyncdb

    asyncdb.init_app(app)  # the async route's tracked AsyncSession factory

    # warm registers @cache.warmer; openapi adds GET /api/openapi.json, pages the HTML
    # room overview, metrics GET /metrics (when prometheus_client is installed) and
    # asyncapi the async folder tree
    from . import api, asyncapi, cli, errors, metrics, openapi, pages, warm  # noqa: F401

    errors.register(app)
    app.register_blueprint(api.bp)
    cli.register(app)
    metrics.register(app)
    return app
