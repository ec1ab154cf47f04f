"""Fixtures of the cached-view tests: an app with a few cached views and call counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask, jsonify, request

from flask_dataroom_cache import DataRoomCache, dataroom_tag


@dataclass
class ViewsApp:
    app: Flask
    cache: DataRoomCache
    calls: Counter[str] = field(default_factory=Counter)

    def get(self, path: str, user: str | None = "u1", **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}) or {})
        if user is not None:
            headers["X-User-Id"] = user
        return self.app.test_client().get(path, headers=headers, **kw)

    @property
    def store(self) -> Any:
        return DataRoomCache.state(self.app).store


@pytest.fixture
def views_app(make_app: Callable[..., tuple[Flask, DataRoomCache]]) -> Callable[..., ViewsApp]:
    """``views_app(**config)``: an app whose identity is the ``X-User-Id`` header."""

    def factory(identity: bool = True, **config: Any) -> ViewsApp:
        app, cache = make_app(**config)
        va = ViewsApp(app, cache)
        if identity:

            @cache.identity
            def current_user_id() -> str | None:
                return request.headers.get("X-User-Id")

        @app.get("/rooms/<room_id>/items")
        @cache.cached(tags=lambda room_id: [dataroom_tag(room_id)])
        def items(room_id: str) -> Any:
            va.calls["items"] += 1
            return jsonify(
                room=room_id,
                user=request.headers.get("X-User-Id"),
                args=list(request.args.items(multi=True)),
                n=va.calls["items"],
            )

        @app.get("/public/<int:page>")
        @cache.cached(shared=True, tags=["public"])
        def public(page: int) -> Any:
            va.calls["public"] += 1
            return jsonify(page=page, n=va.calls["public"])

        return va

    return factory
