"""``async def`` views under ``@cache.cached`` (issue 12 item 4).

The cache's own work (identity, key, read, single flight, lock, deferred write) runs in the
request's thread as for a sync view; only the view body runs through Flask's
``app.ensure_sync`` (``flask[async]``, i.e. asgiref), as Flask runs an uncached async
view. Before: the wrapper handed the coroutine to ``make_response`` (a 500, "coroutine
... was never awaited").
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest
from flask import jsonify, request
from flask.views import MethodView, View

from flask_dataroom_cache import DataRoomCache, invalidate_tags

from .conftest import ViewsApp

pytest.importorskip("asgiref")  # the dev extra installs it (flask[async])


def _async_items(va: ViewsApp) -> None:
    @va.app.get("/a/rooms/<room_id>")
    @va.cache.cached(tags=lambda room_id: [f"room:{room_id}"])
    async def room(room_id: str) -> Any:
        await asyncio.sleep(0)
        va.calls["room"] += 1
        return jsonify(room=room_id, user=request.headers.get("X-User-Id"), n=va.calls["room"])


def test_async_view_misses_then_hits(views_app: Any) -> None:
    va: ViewsApp = views_app()
    _async_items(va)
    first = va.get("/a/rooms/r1")
    assert first.status_code == 200, first.data
    assert first.headers["X-Cache"] == "MISS"
    assert first.get_json() == {"room": "r1", "user": "u1", "n": 1}
    second = va.get("/a/rooms/r1")
    assert second.headers["X-Cache"] == "HIT"
    assert second.data == first.data
    assert va.calls["room"] == 1


def test_async_view_is_per_user_answers_304_and_is_invalidated(views_app: Any) -> None:
    va: ViewsApp = views_app()
    _async_items(va)
    alice = va.get("/a/rooms/r1", user="alice")
    assert va.get("/a/rooms/r1", user="bob").get_json()["user"] == "bob"
    assert va.get("/a/rooms/r1", user="alice").headers["X-Cache"] == "HIT"
    assert va.calls["room"] == 2
    etag = alice.headers["ETag"]
    assert va.get("/a/rooms/r1", user="alice", headers={"If-None-Match": etag}).status_code == 304
    head = va.app.test_client().head("/a/rooms/r1", headers={"X-User-Id": "alice"})
    assert head.status_code == 200 and head.headers["X-Cache"] == "HIT"
    with va.app.app_context():
        invalidate_tags("room:r1")
    again = va.get("/a/rooms/r1", user="alice")
    assert again.headers["X-Cache"] == "MISS" and again.get_json()["n"] == 3
    assert va.get("/a/rooms/r1", user=None).headers["X-Cache"] == "BYPASS"  # anonymous


def test_async_view_answers_other_methods(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.route("/a/note", methods=["GET", "POST"])
    @va.cache.cached(shared=True)
    async def note() -> Any:
        return f"{request.method} note"

    assert va.get("/a/note").data == b"GET note"
    assert va.app.test_client().post("/a/note").data == b"POST note"


def test_async_method_view_and_view_are_cached(views_app: Any) -> None:
    va: ViewsApp = views_app()

    class Item(MethodView):
        @va.cache.cached(shared=True)
        async def get(self, item_id: int) -> Any:
            va.calls["item"] += 1
            return jsonify(id=item_id)

        async def post(self, item_id: int) -> Any:
            return "posted"

    class Report(View):
        @va.cache.cached(shared=True)
        async def dispatch_request(self, name: str) -> Any:
            va.calls["report"] += 1
            return f"report {name}"

    va.app.add_url_rule("/a/items/<int:item_id>", view_func=Item.as_view("a_item"))
    va.app.add_url_rule("/a/reports/<name>", view_func=Report.as_view("a_report"))
    for _ in range(2):
        assert va.get("/a/items/5").get_json() == {"id": 5}
        assert va.get("/a/reports/x").data == b"report x"
    assert va.get("/a/items/5").headers["X-Cache"] == "HIT"
    assert va.get("/a/reports/x").headers["X-Cache"] == "HIT"
    assert va.calls == {"item": 1, "report": 1}
    assert va.app.test_client().post("/a/items/5").data == b"posted"


def test_async_function_returns_a_coroutine_wherever_it_is_not_the_route(
    views_app: Any,
) -> None:
    """Only the route's own call is cached for now (it must answer Flask with a
    response); called by another view or outside a request an async function returns
    what it returns, a coroutine to await."""
    va: ViewsApp = views_app()

    @va.cache.cached(shared=True)
    async def total(n: int) -> int:
        va.calls["total"] += 1
        return n * 2

    @va.app.get("/a/page")
    async def page() -> Any:
        return str(await total(21))

    assert asyncio.run(total(1)) == 2
    for _ in range(2):
        assert va.get("/a/page").data == b"42"


def test_async_view_without_asgiref_fails_at_decoration(
    views_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    va: ViewsApp = views_app()
    monkeypatch.setitem(sys.modules, "asgiref", None)
    monkeypatch.setitem(sys.modules, "asgiref.sync", None)

    async def view() -> Any:
        return "x"

    with pytest.raises(TypeError, match=r"flask\[async\]"):
        va.cache.cached(shared=True)(view)


def test_waiters_of_an_async_view_hold_no_event_loop(views_app: Any) -> None:
    """The cache's work for an async view, waiting in a single flight included, runs in
    the request's thread, outside any event loop (docs/async.md): while the leader
    computes in its loop and a follower waits for it, a third request (an async view too)
    is answered; then the follower reads what the leader stored."""
    va: ViewsApp = views_app()
    release = threading.Event()
    entered = threading.Event()

    @va.app.get("/a/slow")
    @va.cache.cached(shared=True)
    async def slow() -> Any:
        va.calls["slow"] += 1
        entered.set()
        await asyncio.to_thread(release.wait, 30)
        return jsonify(n=va.calls["slow"])

    @va.app.get("/a/other")
    @va.cache.cached(shared=True)
    async def other() -> Any:
        await asyncio.sleep(0)
        return jsonify(other=True)

    flights = DataRoomCache.state(va.app).views.flights
    arrived = threading.Semaphore(0)
    lead = flights.lead

    def counting_lead(key: str) -> Any:
        found = lead(key)
        arrived.release()
        return found

    flights.lead = counting_lead  # type: ignore[method-assign]
    out: dict[str, Any] = {}
    leader = threading.Thread(target=lambda: out.setdefault("leader", va.get("/a/slow")))
    leader.start()
    assert entered.wait(30)
    follower = threading.Thread(target=lambda: out.setdefault("follower", va.get("/a/slow")))
    follower.start()
    assert arrived.acquire(timeout=30) and arrived.acquire(timeout=30)  # both in flight
    third = va.get("/a/other")  # answered while the other two are in flight
    assert third.status_code == 200 and third.get_json() == {"other": True}
    assert leader.is_alive() and follower.is_alive()
    release.set()
    leader.join(30)
    follower.join(30)
    assert out["leader"].headers["X-Cache"] == "MISS"
    assert out["follower"].headers["X-Cache"] == "HIT"
    assert va.calls["slow"] == 1
