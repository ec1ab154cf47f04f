"""The example app as the HTTP benchmark serves it: the real app plus two comparison views.

* ``/bench/fc/datarooms/<room_id>/files``: the *same* view function as
  ``/api/datarooms/<room_id>/files`` (the undecorated ``list_files``), cached with
  Flask-Caching's ``@cache.cached`` on the same Redis, keyed per user and query string like
  ours. The "what people use today" baseline.
* ``/bench/floor/datarooms/<room_id>/files``: returns a constant, pre-built body (the same
  JSON, built once): what Flask + gunicorn cost with no cache and no database at all.

Run with ``gunicorn 'benchmarks.example_wsgi:create()'`` from the repository root.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, request

from example_app import api, create_app


def create() -> Flask:
    app = create_app()
    from flask_caching import Cache

    redis_url = os.environ.get("REDIS_URL") or ""
    fc = Cache(
        app,
        config={
            "CACHE_TYPE": "RedisCache" if redis_url else "SimpleCache",
            "CACHE_REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "dataroom") + "-fc:",
            "CACHE_DEFAULT_TIMEOUT": 300,
        },
    )
    view = api.list_files.__wrapped__  # the undecorated view: same queries, same JSON

    def fc_key(*_args: Any, **_kwargs: Any) -> str:
        return f"files:{request.headers.get('X-User-Id', '')}:{request.full_path}"

    @app.get("/bench/fc/datarooms/<room_id>/files")
    @fc.cached(timeout=300, make_cache_key=fc_key)
    def fc_list_files(room_id: str) -> Any:
        return view(room_id)

    floor: dict[str, bytes] = {}

    @app.get("/bench/floor/datarooms/<room_id>/files")
    def floor_list_files(room_id: str) -> Response:
        key = request.full_path
        body = floor.get(key)
        if body is None:
            body = floor[key] = view(room_id).get_data()
        return Response(body, mimetype="application/json")

    return app
