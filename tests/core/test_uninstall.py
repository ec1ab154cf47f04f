"""``DataRoomCache.uninstall(app)`` undoes ``init_app`` on one app: every hook it added is
gone, the app can be initialised again, and another app of the same extension keeps
caching. (The tracker's listeners and ``do_commit``: tests/tracking/test_detach.py; the
views' hooks: tests/views/test_uninstall.py.)"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask, jsonify, request_finished

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache.state import EXTENSION_KEY


def _hook_counts(app: Flask) -> dict[str, int]:
    return {
        "before_request": len(app.before_request_funcs.get(None, [])),
        "teardown_request": len(app.teardown_request_funcs.get(None, [])),
        "url_value_preprocessors": len(app.url_value_preprocessors.get(None, [])),
        "request_finished": len(list(request_finished.receivers_for(app))),
    }


def _app(cache_config: dict[str, Any], ext: DataRoomCache, **extra: Any) -> Flask:
    app = Flask(f"uninstall_{uuid.uuid4().hex[:6]}")
    app.config.update(TESTING=True, **cache_config, **extra)

    @app.get("/n")
    @ext.cached(shared=True)
    def n() -> Any:
        return jsonify(n=1)

    return app


def test_uninstall_restores_the_app_and_leaves_another_caching(
    cache_config: dict[str, Any],
) -> None:
    ext = DataRoomCache()
    # CACHE_TYPE without Flask-Caching on the app: init_app adds its first-request check too
    gone = _app(cache_config, ext, CACHE_TYPE="RedisCache")
    kept = _app(cache_config, ext)
    before = _hook_counts(gone)
    ext.init_app(gone)
    ext.init_app(kept)
    installed = _hook_counts(gone)
    assert installed != before
    assert "dataroom-cache" in gone.cli.commands
    assert gone.test_client().get("/n").headers["X-Cache"] == "MISS"

    ext.uninstall(gone)

    assert _hook_counts(gone) == before
    assert EXTENSION_KEY not in gone.extensions
    assert "dataroom-cache" not in gone.cli.commands
    client = kept.test_client()
    assert client.get("/n").headers["X-Cache"] == "MISS"
    assert client.get("/n").headers["X-Cache"] == "HIT"
    ext.uninstall(gone)  # a second time: nothing left to undo


def test_an_uninstalled_app_can_be_initialised_again(cache_config: dict[str, Any]) -> None:
    """Before its first request (Flask's rule for setup methods): one set of hooks."""
    ext = DataRoomCache()
    app = _app(cache_config, ext)
    ext.init_app(app)
    installed = _hook_counts(app)
    ext.uninstall(app)
    ext.init_app(app)
    assert _hook_counts(app) == installed
    client = app.test_client()
    assert client.get("/n").headers["X-Cache"] == "MISS"
    assert client.get("/n").headers["X-Cache"] == "HIT"


def test_init_app_with_the_current_app_proxy(cache_config: dict[str, Any]) -> None:
    """``init_app(current_app)`` sets up the app behind the proxy: its hooks and signal
    connections are keyed by the app itself (blinker keys senders by identity)."""
    from flask import current_app

    ext = DataRoomCache()
    app = _app(cache_config, ext)
    before = _hook_counts(app)
    with app.app_context():
        ext.init_app(current_app)
    assert DataRoomCache.state(app).store.app_ref() is app
    client = app.test_client()
    assert client.get("/n").headers["X-Cache"] == "MISS"
    assert client.get("/n").headers["X-Cache"] == "HIT"
    ext.uninstall(app)
    assert _hook_counts(app) == before
