"""``View.dispatch_request`` under ``@cache.cached`` is the route (issue 12 item 6).

Before, only a ``MethodView``'s ``get`` (or the class's ``decorators``) was recognised
as the route's own call: a cached ``dispatch_request`` was taken for a function another
view calls, keyed by its arguments (``self`` first: no key) and never cached ("cannot
build a cache key").
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import jsonify
from flask.views import MethodView, View

from flask_dataroom_cache import invalidate_tags

from .conftest import ViewsApp


def test_view_dispatch_request_is_cached_like_the_route(
    views_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    va: ViewsApp = views_app()

    class Room(View):
        @va.cache.cached(tags=lambda room_id: [f"room:{room_id}"])
        def dispatch_request(self, room_id: int) -> Any:
            va.calls["room"] += 1
            return jsonify(room=room_id, n=va.calls["room"])

    va.app.add_url_rule("/rooms/<int:room_id>", view_func=Room.as_view("room"))
    with caplog.at_level(logging.WARNING, logger="flask_dataroom_cache"):
        first = va.get("/rooms/5")
        second = va.get("/rooms/5")
    assert first.headers["X-Cache"] == "MISS"
    assert second.headers["X-Cache"] == "HIT"
    assert second.data == first.data
    assert not [r for r in caplog.records if "cache key" in r.getMessage()]
    assert va.get("/rooms/5", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    assert va.get("/rooms/6").get_json() == {"room": 6, "n": 2}
    assert va.get("/rooms/5", user="bob").headers["X-Cache"] == "MISS"  # per user
    with va.app.app_context():
        invalidate_tags("room:5")  # the tags callable got the route's view args
    assert va.get("/rooms/5").get_json() == {"room": 5, "n": 4}


def test_method_view_overriding_dispatch_request_is_cached(views_app: Any) -> None:
    va: ViewsApp = views_app()

    class Feed(MethodView):
        @va.cache.cached(shared=True)
        def dispatch_request(self, **kwargs: Any) -> Any:
            return super().dispatch_request(**kwargs)

        def get(self, name: str) -> Any:
            va.calls["feed"] += 1
            return f"feed {name}"

    va.app.add_url_rule("/feeds/<name>", view_func=Feed.as_view("feed"))
    assert va.get("/feeds/a").data == b"feed a"
    assert va.get("/feeds/a").headers["X-Cache"] == "HIT"
    assert va.calls["feed"] == 1
