"""Where a miss's fill waits for the final response: per request context.

The write happens at ``request_finished`` and the single flight is held until then, so
a request must never wait on a flight it leads itself, nor on one whose leader waits on
it; a context copied to another thread must not finish the request's fills; a cached
function called after ``request_finished`` (in a streamed body) fills at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import (
    Response,
    copy_current_request_context,
    jsonify,
    request,
    stream_with_context,
)

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache import views as views_module
from flask_dataroom_cache.keys import build_key

from .conftest import ViewsApp


def _running(va: ViewsApp) -> dict[str, threading.Event]:
    """The keys whose single flight is held."""
    flights: views_module._Flights = DataRoomCache.state(va.app).views.flights
    return flights._running


def test_plain_view_calling_a_cached_function_twice_does_not_wait_on_itself(
    views_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first call leads the key's flight until request_finished; the second call
    misses (the fill is pending) and used to wait FLIGHT_WAIT on that flight."""
    va: ViewsApp = views_app()
    monkeypatch.setattr(views_module, "FLIGHT_WAIT", 1.0)

    @va.app.get("/item")
    @va.cache.cached(shared=True)
    def item() -> Any:
        va.calls["item"] += 1
        return jsonify(v=1)

    @va.app.get("/page")
    def page() -> Any:
        first, second = item(), item()
        return (
            first.get_data()
            + second.get_data()
            + (first.headers["X-Cache"] + second.headers["X-Cache"]).encode()
        )

    started = time.monotonic()
    resp = va.get("/page")
    assert time.monotonic() - started < 0.5
    assert resp.status_code == 200
    assert resp.data == b'{"v":1}\n{"v":1}\nMISSMISS'
    assert va.calls["item"] == 2  # the second call computed (its flight is this request's)
    assert _running(va) == {}
    again = va.get("/page")  # both calls hit what the first call stored
    assert again.data == b'{"v":1}\n{"v":1}\nHITHIT'
    assert va.calls["item"] == 2


def _two_keys(va: ViewsApp) -> tuple[Any, Any]:
    """Two cached functions a plain view calls, keyed apart: both are keyed by the
    request's endpoint (not its query string), ``b`` also by ``X-Variant``."""

    @va.cache.cached(shared=True, lock=True, query=False)
    def a() -> Any:
        va.calls["a"] += 1
        return jsonify(a=1)

    @va.cache.cached(shared=True, lock=True, query=False, vary=("X-Variant",))
    def b() -> Any:
        va.calls["b"] += 1
        return jsonify(b=1)

    return a, b


def test_two_cached_functions_called_by_one_plain_view_are_both_stored(
    views_app: Any,
) -> None:
    va: ViewsApp = views_app()
    a, b = _two_keys(va)

    @va.app.get("/page")
    def page() -> Any:
        return a().get_data() + b().get_data()

    for _ in range(2):
        resp = va.get("/page", headers={"X-Variant": "1"})
        assert resp.data == b'{"a":1}\n{"b":1}\n'
    assert va.calls == {"a": 1, "b": 1}
    assert _running(va) == {}


def test_requests_holding_the_flight_the_other_wants_do_not_wait(
    views_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request calls a then b, another b then a: each leads its first key until its
    final response, so waiting on the other's flight was a cycle (both waited
    FLIGHT_WAIT, then computed)."""
    va: ViewsApp = views_app()
    monkeypatch.setattr(views_module, "FLIGHT_WAIT", 1.0)
    a, b = _two_keys(va)
    both_hold_one = threading.Barrier(2, timeout=10)

    @va.app.get("/page")
    def page() -> Any:
        first, second = (a, b) if request.args["order"] == "ab" else (b, a)
        out = first().get_data()
        both_hold_one.wait()
        return out + second().get_data()

    results: dict[str, Any] = {}

    def worker(order: str) -> None:
        results[order] = va.get(f"/page?order={order}", headers={"X-Variant": "1"})

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(o,)) for o in ("ab", "ba")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert time.monotonic() - started < 0.8
    assert results["ab"].status_code == results["ba"].status_code == 200
    assert _running(va) == {}
    # each computed the key the other held, or read it if the other was already done
    assert va.calls["a"] + va.calls["b"] in (3, 4)


def test_request_holding_a_flight_does_not_poll_a_lock_held_elsewhere(
    views_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same cycle across processes: this request holds a's flight and lock until its
    final response; b's lock is held by another process, which may be waiting for a."""
    va: ViewsApp = views_app()
    monkeypatch.setattr(views_module, "LOCK_WAIT", 1.0)
    a, b = _two_keys(va)

    @va.app.get("/page")
    def page() -> Any:
        return a().get_data() + b().get_data()

    prefix = va.store.settings.key_prefix
    b_key = build_key(prefix, "~view", "page", {"~v0": "1", "~h": "localhost"})
    assert va.store.add(f"{prefix}:~lock:{b_key[len(prefix) + 1 :]}", 1, 5)
    started = time.monotonic()
    resp = va.get("/page", headers={"X-Variant": "1"})
    assert time.monotonic() - started < 0.5
    assert resp.status_code == 200
    assert va.calls == {"a": 1, "b": 1}
    assert _running(va) == {}


def test_copied_context_ending_in_a_thread_does_not_drop_the_fill(
    views_app: Any,
) -> None:
    """A cached view hands work to a thread with copy_current_request_context; the copy
    shares the WSGI environ, and its teardown, run when the thread ends (here between
    the view's return and request_finished), used to finish the request's pending fill
    with nothing: the 200 was never stored, the flight and lock released early."""
    va: ViewsApp = views_app()
    go = threading.Event()
    threads: list[threading.Thread] = []

    @va.app.get("/item")
    @va.cache.cached(shared=True, lock=True)
    def item() -> Any:
        va.calls["item"] += 1

        @copy_current_request_context
        def audit() -> None:
            assert go.wait(10)

        t = threading.Thread(target=audit)
        t.start()
        threads.append(t)
        return jsonify(v=1)

    held: list[bool] = []

    @va.app.after_request
    def wait_for_the_thread(resp: Response) -> Response:
        go.set()
        for t in threads:
            t.join(10)
        threads.clear()
        go.clear()
        held.append(bool(_running(va)))  # the flight is held until the write
        return resp

    assert va.get("/item").headers["X-Cache"] == "MISS"
    assert _running(va) == {}
    assert va.get("/item").headers["X-Cache"] == "HIT"
    assert va.get("/item").headers["X-Cache"] == "HIT"
    assert va.calls["item"] == 1
    assert held == [True, False, False]


def test_cached_function_called_while_streaming_is_stored_at_once(
    views_app: Any,
) -> None:
    """A stream_with_context generator runs after request_finished: a fill deferred to
    the final response was dropped at teardown, so every request recomputed."""
    va: ViewsApp = views_app()

    @va.app.get("/feed")
    def feed() -> Any:
        def gen() -> Any:
            yield item().get_data()
            yield no_store().get_data()

        return va.app.response_class(stream_with_context(gen()))

    @va.cache.cached(shared=True)
    def item() -> Any:
        va.calls["item"] += 1
        return jsonify(v=1)

    @va.cache.cached(shared=True, vary=("X-Variant",))
    def no_store() -> Any:
        va.calls["no_store"] += 1
        resp = jsonify(n=1)
        resp.headers["Cache-Control"] = "no-store"  # the view-level checks still apply
        return resp

    for _ in range(3):
        assert va.get("/feed", headers={"X-Variant": "1"}).data == b'{"v":1}\n{"n":1}\n'
    assert va.calls == {"item": 1, "no_store": 3}
    assert _running(va) == {}


def test_cached_functions_called_by_a_plain_view_are_keyed_by_function_and_arguments(
    views_app: Any,
) -> None:
    """Keyed like the request, ``item(5)`` and ``item(6)`` (or two different functions
    with the same options) shared one entry: the second call was served the first's body."""
    va: ViewsApp = views_app()

    @va.cache.cached(shared=True)
    def item(n: int) -> Any:
        va.calls[f"item{n}"] += 1
        return jsonify(item=n)

    @va.cache.cached(shared=True)
    def other() -> Any:
        va.calls["other"] += 1
        return jsonify(other=1)

    @va.cache.cached(shared=True)
    def odd(value: Any) -> Any:
        va.calls["odd"] += 1
        return jsonify(odd=1)

    @va.app.get("/page")
    def page() -> Any:
        return b"".join(r.get_data() for r in (item(5), item(6), item(n=5), other(), odd(object())))

    for _ in range(2):
        resp = va.get("/page")
        assert resp.data == b'{"item":5}\n{"item":6}\n{"item":5}\n{"other":1}\n{"odd":1}\n'
    # every call cached under its own key; an argument a key cannot hold is not cached
    assert va.calls == {"item5": 2, "item6": 1, "other": 1, "odd": 2}


def test_tags_of_a_cached_function_come_from_its_own_arguments(views_app: Any) -> None:
    from flask_dataroom_cache import invalidate_tags

    va: ViewsApp = views_app()

    @va.cache.cached(shared=True, tags=lambda item_id: [f"item:{item_id}"])
    def item(item_id: int) -> Any:
        va.calls[f"item{item_id}"] += 1
        return jsonify(item=item_id, n=va.calls[f"item{item_id}"])

    @va.app.get("/page/<int:item_id>")
    def page(item_id: int) -> Any:
        return item(5).get_data()

    @va.app.get("/other")
    def other() -> Any:  # no view args at all: the route's would not bind
        return item(item_id=6).get_data()

    assert va.get("/page/7").data == b'{"item":5,"n":1}\n'
    with va.app.app_context():
        invalidate_tags("item:5")  # was tagged item:7 (the route's argument)
    assert va.get("/page/7").data == b'{"item":5,"n":2}\n'
    assert va.get("/other").status_code == 200
    assert va.get("/other").data == b'{"item":6,"n":1}\n'


def test_per_user_view_called_by_a_shared_view_is_never_shared(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/me")
    @va.cache.cached()  # per user
    def me() -> Any:
        return jsonify(user=request.headers.get("X-User-Id"))

    @va.app.get("/home")
    @va.cache.cached(shared=True)
    def home() -> Any:
        return me()

    assert va.get("/home", user="alice").get_json() == {"user": "alice"}
    assert va.get("/home", user="bob").get_json() == {"user": "bob"}


def test_outer_view_missing_the_inner_views_tags_is_not_stored(views_app: Any) -> None:
    from flask_dataroom_cache import invalidate_tags

    va: ViewsApp = views_app()

    @va.app.get("/rooms/<rid>")
    @va.cache.cached(shared=True, tags=lambda rid: [f"room:{rid}"])
    def room(rid: str) -> Any:
        va.calls["room"] += 1
        return jsonify(v=va.calls["room"])

    @va.app.get("/alias/<rid>")
    @va.cache.cached(shared=True)  # no tags: its entry would outlive room:{rid}
    def alias(rid: str) -> Any:
        return room(rid)

    assert va.get("/alias/1").get_json() == {"v": 1}
    with va.app.app_context():
        invalidate_tags("room:1")
    assert va.get("/alias/1").get_json() == {"v": 2}


def test_conditional_request_is_the_routes_not_a_called_functions(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.cache.cached(shared=True)
    def summary(n: int) -> Any:
        return jsonify(total=n)

    @va.app.get("/dashboard")
    def dashboard() -> Any:
        return jsonify(a=summary(1).get_json(), b=summary(2).get_json())

    for _ in range(2):  # miss, then hit
        resp = va.get("/dashboard", headers={"If-None-Match": "*"})
        assert resp.status_code == 200
        assert resp.get_json() == {"a": {"total": 1}, "b": {"total": 2}}


def test_a_nested_refusal_blocks_only_the_outer_entry(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.cache.cached(shared=True, tags=["b"])
    def b() -> Any:
        va.calls["b"] += 1
        return jsonify(b=1)

    @va.cache.cached(shared=True, tags=["a"])  # lacks b's tag: not stored
    def a() -> Any:
        va.calls["a"] += 1
        return b()

    @va.cache.cached(shared=True, tags=["c"])
    def c() -> Any:
        va.calls["c"] += 1
        return jsonify(c=1)

    @va.app.get("/page")
    def page() -> Any:
        return a().get_data() + c().get_data()

    for _ in range(3):
        va.get("/page")
    assert va.calls["a"] == 3 and va.calls["c"] == 1  # c is stored whatever a does


def test_nested_view_unless_and_vary_are_not_lost(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/panel")
    @va.cache.cached(shared=True, unless=lambda: request.headers.get("X-Admin") == "1")
    def panel() -> Any:
        return "ADMIN" if request.headers.get("X-Admin") == "1" else "public"

    @va.app.get("/greet")
    @va.cache.cached(shared=True, vary=("Accept-Language",))
    def greet() -> Any:
        return "bonjour" if request.headers.get("Accept-Language") == "fr" else "hello"

    @va.app.get("/home")
    @va.cache.cached(shared=True)
    def home() -> Any:
        return f"{panel()} | {greet()}"

    va.get("/home", headers={"X-Admin": "1", "Accept-Language": "fr"})
    assert va.get("/home").data == b"public | hello"


def test_method_view_is_a_route(views_app: Any) -> None:
    from flask.views import MethodView

    va: ViewsApp = views_app()

    class Item(MethodView):
        @va.cache.cached(shared=True, tags=lambda item_id: [f"item:{item_id}"])
        def get(self, item_id: int) -> Any:
            va.calls["item"] += 1
            return jsonify(id=item_id)

    va.app.add_url_rule("/items/<int:item_id>", view_func=Item.as_view("item"))
    first = va.get("/items/5")
    assert va.get("/items/5").headers["X-Cache"] == "HIT"
    assert va.calls["item"] == 1
    again = va.get("/items/5", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


def test_url_value_preprocessor_popping_a_value_keeps_it_in_the_key(views_app: Any) -> None:
    from flask import Blueprint, g

    va: ViewsApp = views_app()
    bp = Blueprint("t", __name__, url_prefix="/<tenant>")

    @bp.url_value_preprocessor
    def pull(endpoint: Any, values: Any) -> None:
        g.tenant = values.pop("tenant")

    @bp.route("/report")
    @va.cache.cached(shared=True)
    def report() -> Any:
        return f"report of {g.tenant}"

    va.app.register_blueprint(bp)
    assert va.get("/acme/report").data == b"report of acme"
    assert va.get("/globex/report").data == b"report of globex"
    assert va.get("/acme/report").headers["X-Cache"] == "HIT"


def test_view_class_decorators_hold_the_cache(views_app: Any) -> None:
    from flask.views import MethodView

    va: ViewsApp = views_app()

    class Room(MethodView):
        decorators = [va.cache.cached(shared=True, tags=lambda room_id: [f"room:{room_id}"])]

        def get(self, room_id: int) -> Any:
            va.calls["room"] += 1
            return f"room {room_id}"

    va.app.add_url_rule("/rooms/<int:room_id>", view_func=Room.as_view("room"))
    first = va.get("/rooms/5")
    assert first.status_code == 200 and va.get("/rooms/5").headers["X-Cache"] == "HIT"
    assert va.get("/rooms/5", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    assert va.calls["room"] == 1


def test_functions_made_by_one_factory_do_not_share_entries(views_app: Any) -> None:
    va: ViewsApp = views_app()
    data = {"users": {1: "alice"}, "rooms": {1: "minutes"}}

    def make_detail(kind: str) -> Any:
        @va.cache.cached(shared=True)
        def detail(obj_id: int) -> Any:
            return data[kind][obj_id]

        return detail

    user_detail, room_detail = make_detail("users"), make_detail("rooms")

    @va.app.get("/compare")
    def compare() -> Any:
        return user_detail(1) + "|" + room_detail(1)  # the functions' own values (str)

    for _ in range(2):
        assert va.get("/compare").data == b"alice|minutes"


def test_identity_false_is_anonymous_and_objects_are_refused(views_app: Any) -> None:
    va: ViewsApp = views_app(identity=False)
    who: list[Any] = [False]

    @va.cache.identity
    def ident() -> Any:
        return who[0]

    @va.app.get("/mine")
    @va.cache.cached()
    def mine() -> Any:
        va.calls["mine"] += 1
        return "x"

    assert va.get("/mine").headers["X-Cache"] == "BYPASS"  # not a shared "False" user
    who[0] = object()
    va.app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(TypeError, match="identity provider"):
        va.get("/mine")


def test_every_vary_and_cache_control_line_is_read(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/greet")
    @va.cache.cached(shared=True, vary=("Origin",))
    def greet() -> Any:
        resp = Response("bonjour" if request.headers.get("Accept-Language") == "fr" else "hi")
        resp.headers.add("Vary", "Origin")
        resp.headers.add("Vary", "Accept-Language")  # a second line
        return resp

    @va.app.get("/dash")
    @va.cache.cached(shared=True)
    def dash() -> Any:
        resp = Response(f"dashboard of {request.headers.get('X-User-Id')}")
        resp.headers.add("Cache-Control", "max-age=0")
        resp.headers.add("Cache-Control", "private")  # a second line
        return resp

    va.get("/greet", headers={"Accept-Language": "fr"})
    assert va.get("/greet", headers={"Accept-Language": "en"}).data == b"hi"
    va.get("/dash", user="alice")
    assert va.get("/dash", user="bob").data == b"dashboard of bob"


def test_vary_given_as_a_comma_list_is_split(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/greet")
    @va.cache.cached(shared=True, vary=("Accept-Language, Accept-Encoding",))
    def greet() -> Any:
        return "bonjour" if request.headers.get("Accept-Language") == "fr" else "hi"

    va.get("/greet", headers={"Accept-Language": "fr"})
    assert va.get("/greet", headers={"Accept-Language": "en"}).data == b"hi"
    with pytest.raises(ValueError, match="header name"):
        va.cache.cached(vary=("Accept Language",))


def test_host_and_route_values_are_in_the_key(views_app: Any) -> None:
    from flask import g

    va: ViewsApp = views_app()

    @va.app.before_request
    def tenant() -> None:
        g.tenant = request.host.split(".")[0]

    @va.app.get("/me")
    @va.cache.cached()
    def me() -> Any:
        return f"user {request.headers.get('X-User-Id')} of {g.tenant}"

    @va.cache.cached(shared=True)
    def price_list() -> Any:
        return f"prices of {g.tenant}"

    @va.app.get("/<region>/prices")
    def prices(region: str) -> Any:
        return price_list() + region  # the function's own value (str)

    c = va.app.test_client()
    c.get("/me", base_url="http://acme.example.com", headers={"X-User-Id": "1"})
    resp = c.get("/me", base_url="http://globex.example.com", headers={"X-User-Id": "1"})
    assert resp.data == b"user 1 of globex"
    c.get("/eu/prices", base_url="http://acme.example.com")
    assert c.get("/us/prices", base_url="http://globex.example.com").data == b"prices of globexus"
