"""Fixtures of the cached-view tests: an app with a few cached views and call counters."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from flask import Flask, jsonify, request

from flask_dataroom_cache import DataRoomCache, dataroom_tag

F = TypeVar("F", bound=Callable[..., Any])


def flavour(kind: str) -> Callable[[F], F]:
    """The function as it is (``"sync"``), or an ``async def`` doing the same after an
    ``await`` (``"async"``): one test body runs a sync and an async view, identity, tags
    or unless (issue 14: async views cache exactly like sync ones)."""

    def decorate(fn: F) -> F:
        if kind == "sync":
            return fn

        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate


@pytest.fixture(params=["sync", "async"])
def view_kind(request: pytest.FixtureRequest) -> str:
    """``"sync"`` or ``"async"``: what :func:`flavour` makes of a view (and its callables)."""
    pytest.importorskip("asgiref")  # flask[async]
    return str(request.param)


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

    def factory(identity: bool = True, kind: str = "sync", **config: Any) -> ViewsApp:
        """``kind="async"``: the two views, their tags callable and the identity function
        are ``async def`` (:func:`flavour`)."""
        app, cache = make_app(**config)
        va = ViewsApp(app, cache)
        as_kind = flavour(kind)
        if identity:

            @cache.identity
            @as_kind
            def current_user_id() -> str | None:
                return request.headers.get("X-User-Id")

        @app.get("/rooms/<room_id>/items")
        @cache.cached(tags=as_kind(lambda room_id: [dataroom_tag(room_id)]))
        @as_kind
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
        @as_kind
        def public(page: int) -> Any:
            va.calls["public"] += 1
            return jsonify(page=page, n=va.calls["public"])

        return va

    return factory
