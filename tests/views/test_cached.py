"""The cached-GET decorator: keys, safety rules, HTTP behaviour, tags, metrics, errors."""

from __future__ import annotations

import hashlib
import sys
import types
from typing import Any

import pytest
from flask import (
    Response,
    after_this_request,
    jsonify,
    make_response,
    request,
    session,
    stream_with_context,
)

from flask_dataroom_cache import DataRoomCache, MissingIdentityError, user_tag
from flask_dataroom_cache.backends.base import BackendError
from flask_dataroom_cache.testing import assert_hit, assert_miss

from .conftest import ViewsApp, flavour


# -- hits, misses, keys -----------------------------------------------------------------------
def test_miss_then_hit_same_body(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    first = va.get("/rooms/r1/items")
    assert first.status_code == 200
    assert_miss(first)
    second = va.get("/rooms/r1/items")
    assert_hit(second)
    assert second.data == first.data
    assert second.mimetype == "application/json"
    assert second.headers["ETag"] == first.headers["ETag"]
    assert va.calls["items"] == 1


def test_strong_etag_is_hash_of_body(views_app: Any) -> None:
    va: ViewsApp = views_app()
    resp = va.get("/rooms/r1/items")
    etag = resp.headers["ETag"]
    assert not etag.startswith("W/")
    assert etag == '"' + hashlib.blake2b(resp.data, digest_size=16).hexdigest() + '"'
    assert va.get("/rooms/r1/items").headers["ETag"] == etag


def test_two_users_never_see_each_others_entries(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    a1 = va.get("/rooms/r1/items", user="alice")
    b1 = va.get("/rooms/r1/items", user="bob")
    assert_miss(a1)
    assert_miss(b1)
    a2 = va.get("/rooms/r1/items", user="alice")
    b2 = va.get("/rooms/r1/items", user="bob")
    assert_hit(a2)
    assert_hit(b2)
    assert a2.get_json()["user"] == "alice"
    assert b2.get_json()["user"] == "bob"
    assert va.calls["items"] == 2


def test_identities_that_look_like_key_syntax_do_not_collide(views_app: Any) -> None:
    va: ViewsApp = views_app()
    users = ["u1", "u1:~q=a", "u1%3A", "u1 ", "*", "u1\u00e9", "~"]
    for user in users:
        assert_miss(va.get("/rooms/r1/items", user=user))
    for user in users:
        resp = va.get("/rooms/r1/items", user=user)
        assert_hit(resp)
        assert resp.get_json()["user"] == user
    assert va.calls["items"] == len(users)


def test_view_args_and_query_are_part_of_the_key(views_app: Any) -> None:
    va: ViewsApp = views_app()
    assert_miss(va.get("/rooms/r1/items"))
    assert_miss(va.get("/rooms/r2/items"))
    assert_miss(va.get("/rooms/r1/items?x=1"))
    assert_miss(va.get("/rooms/r1/items?x=2"))
    assert va.get("/rooms/r1/items?x=1").get_json()["args"] == [["x", "1"]]
    assert va.get("/rooms/r2/items").get_json()["room"] == "r2"


def test_query_is_normalised_by_name_keeping_repeated_order(views_app: Any) -> None:
    va: ViewsApp = views_app()
    assert_miss(va.get("/rooms/r1/items?b=2&a=1"))
    assert_hit(va.get("/rooms/r1/items?a=1&b=2"))
    assert_miss(va.get("/rooms/r1/items?a=1&a=2"))
    assert_miss(va.get("/rooms/r1/items?a=2&a=1"))
    resp = va.get("/rooms/r1/items?a=2&b=0&a=1")
    assert_miss(resp)
    assert_hit(va.get("/rooms/r1/items?b=0&a=2&a=1"))
    # separators inside values cannot forge other parameters
    assert_miss(va.get("/rooms/r1/items?a=1%26b%3D2"))
    assert_miss(va.get("/rooms/r1/items?a="))
    assert_hit(va.get("/rooms/r1/items?a"))  # same as a=


def test_query_false_or_names_limit_the_key(views_app: Any) -> None:
    va: ViewsApp = views_app()
    cache = va.cache

    @va.app.get("/noq")
    @cache.cached(shared=True, query=False)
    def noq() -> Any:
        va.calls["noq"] += 1
        return jsonify(n=va.calls["noq"])

    @va.app.get("/someq")
    @cache.cached(shared=True, query=("page",))
    def someq() -> Any:
        va.calls["someq"] += 1
        return jsonify(n=va.calls["someq"])

    assert va.get("/noq?a=1").headers["X-Cache"] == "MISS"
    assert va.get("/noq?a=2").headers["X-Cache"] == "HIT"
    assert va.get("/someq?page=1&utm=x").headers["X-Cache"] == "MISS"
    assert va.get("/someq?page=1&utm=y").headers["X-Cache"] == "HIT"
    assert va.get("/someq?page=2").headers["X-Cache"] == "MISS"


def test_vary_headers_split_entries_and_are_announced(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/greet")
    @va.cache.cached(shared=True, vary=("Accept-Language",))
    def greet() -> Any:
        va.calls["greet"] += 1
        return jsonify(lang=request.headers.get("Accept-Language"))

    en = va.get("/greet", headers={"Accept-Language": "en"})
    assert en.headers["X-Cache"] == "MISS"
    assert "Accept-Language" in en.headers["Vary"]
    fr = va.get("/greet", headers={"Accept-Language": "fr"})
    assert fr.headers["X-Cache"] == "MISS"
    none = va.get("/greet")
    assert none.headers["X-Cache"] == "MISS"
    empty = va.get("/greet", headers={"Accept-Language": ""})
    assert empty.headers["X-Cache"] == "MISS"
    again = va.get("/greet", headers={"Accept-Language": "fr"})
    assert again.headers["X-Cache"] == "HIT"
    assert again.get_json() == {"lang": "fr"}
    assert "Accept-Language" in again.headers["Vary"]


@pytest.mark.parametrize("declared", [False, True])
def test_views_own_vary_must_be_covered_by_the_key(
    views_app: Any, declared: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A view announcing ``Vary: Accept-Language`` itself: without ``vary=`` one entry
    would serve every language, so nothing is stored (one warning); declared, each
    language gets its entry."""
    va: ViewsApp = views_app()

    @va.app.get("/greeting")
    @va.cache.cached(shared=True, vary=("accept-language",) if declared else ())
    def greeting() -> Any:
        va.calls["greeting"] += 1
        lang = request.accept_languages.best_match(["en", "fr"]) or "en"
        resp = make_response({"en": "Hello", "fr": "Bonjour"}[lang])
        resp.vary.add("Accept-Language")
        return resp

    for _ in range(2):
        en = va.get("/greeting", headers={"Accept-Language": "en"})
        fr = va.get("/greeting", headers={"Accept-Language": "fr"})
        assert (en.data, fr.data) == (b"Hello", b"Bonjour")
    assert fr.headers["X-Cache"] == ("HIT" if declared else "MISS")
    assert va.calls["greeting"] == (2 if declared else 4)
    warnings = [r for r in caplog.records if "Vary: Accept-Language" in r.getMessage()]
    assert len(warnings) == (0 if declared else 1)  # once per endpoint, not per miss


def test_vary_star_or_uncovered_cookie_is_never_stored(views_app: Any) -> None:
    va: ViewsApp = views_app()

    def varying(value: str) -> Any:
        resp = make_response(jsonify(ok=1))
        resp.headers["Vary"] = value
        return resp

    @va.app.get("/star")
    @va.cache.cached()
    def star() -> Any:
        return varying("*")

    @va.app.get("/cookie-shared")
    @va.cache.cached(shared=True)
    def cookie_shared() -> Any:
        return varying("Cookie")

    @va.app.get("/cookie-user")
    @va.cache.cached()
    def cookie_user() -> Any:
        return varying("Cookie")  # the identity is in the key: covered

    for path in ("/star", "/cookie-shared"):
        assert va.get(path).headers["X-Cache"] == "MISS"
        assert va.get(path).headers["X-Cache"] == "MISS"
    assert va.get("/cookie-user").headers["X-Cache"] == "MISS"
    hit = va.get("/cookie-user")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers["Vary"] == "Cookie"


def test_shared_view_reading_the_session_is_never_stored(views_app: Any) -> None:
    """Flask adds ``Vary: Cookie`` after the view when the session was read: a shared
    entry built from Alice's session must not be served to Bob."""
    va: ViewsApp = views_app(SECRET_KEY="s")

    @va.app.get("/login/<name>")
    def login(name: str) -> Any:
        session["name"] = name
        return "ok"

    @va.app.get("/banner")
    @va.cache.cached(shared=True)
    def banner() -> Any:
        va.calls["banner"] += 1
        return f"Welcome {session.get('name', 'guest')}"

    @va.app.get("/banner-per-cookie")
    @va.cache.cached(shared=True, vary=("Cookie",))  # the cookie itself is in the key
    def banner_per_cookie() -> Any:
        return f"Welcome {session.get('name', 'guest')}"

    @va.app.get("/banner-user")
    @va.cache.cached()  # per user: the identity is in the key
    def banner_user() -> Any:
        return f"Welcome {session.get('name', 'guest')}"

    alice, bob = va.app.test_client(), va.app.test_client()
    alice.get("/login/alice")
    bob.get("/login/bob")
    for path in ("/banner", "/banner-per-cookie"):
        a = alice.get(path)
        assert a.data == b"Welcome alice"
        assert "Cookie" in a.headers["Vary"]
        b = bob.get(path)
        assert b.data == b"Welcome bob"
        assert b.headers["X-Cache"] == "MISS"
    assert va.calls["banner"] == 2
    assert alice.get("/banner").headers["X-Cache"] == "MISS"  # never stored
    assert alice.get("/banner-per-cookie").headers["X-Cache"] == "HIT"
    assert alice.get("/banner-per-cookie").data == b"Welcome alice"
    user = {"X-User-Id": "alice"}
    assert alice.get("/banner-user", headers=user).headers["X-Cache"] == "MISS"
    assert alice.get("/banner-user", headers=user).headers["X-Cache"] == "HIT"


def test_shared_view_is_not_stored_when_a_hook_read_the_session(views_app: Any) -> None:
    """A before_request hook reading the session into ``g``: the view may depend on it
    without touching ``session``; the final ``Vary: Cookie`` says so."""
    from flask import g

    va: ViewsApp = views_app(SECRET_KEY="s")

    @va.app.before_request
    def load_user() -> None:
        g.name = session.get("name", "guest")

    @va.app.get("/hello")
    @va.cache.cached(shared=True)
    def hello() -> Any:
        return f"Hello {g.name}"

    assert va.get("/hello").headers["X-Cache"] == "MISS"
    assert va.get("/hello").headers["X-Cache"] == "MISS"


def test_non_get_methods_pass_through(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)

    @va.app.route("/both", methods=["GET", "POST"])
    @va.cache.cached(shared=True)
    @flavour(view_kind)
    def both() -> Any:
        va.calls["both"] += 1
        return jsonify(n=va.calls["both"])

    client = va.app.test_client()
    assert client.post("/both").headers.get("X-Cache") is None
    assert client.post("/both").get_json() == {"n": 2}
    assert client.get("/both").headers["X-Cache"] == "MISS"
    assert client.post("/both").get_json() == {"n": 4}
    assert client.get("/both").headers["X-Cache"] == "HIT"


def test_stored_headers_and_mimetype_come_back(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/csv")
    @va.cache.cached(shared=True)
    def csv() -> Any:
        va.calls["csv"] += 1
        resp = Response("a,b\n1,2\n", mimetype="text/csv")
        resp.headers["X-Total-Count"] = "1"
        resp.headers["Content-Disposition"] = "attachment; filename=x.csv"
        return resp

    first = va.get("/csv")
    hit = va.get("/csv")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.mimetype == "text/csv"
    assert hit.headers["Content-Type"] == first.headers["Content-Type"]
    assert hit.headers["X-Total-Count"] == "1"
    assert hit.headers["Content-Disposition"] == "attachment; filename=x.csv"
    assert hit.headers["Content-Length"] == str(len(first.data))
    assert hit.data == b"a,b\n1,2\n"


# -- identity -------------------------------------------------------------------------------
def test_per_user_view_without_identity_provider_fails_loudly(views_app: Any) -> None:
    va: ViewsApp = views_app(identity=False)
    with pytest.raises(MissingIdentityError, match="shared=True"):
        va.get("/rooms/r1/items")
    assert va.calls["items"] == 0
    # a shared view of the same app works without an identity
    assert va.get("/public/1").headers["X-Cache"] == "MISS"
    assert va.get("/public/1").headers["X-Cache"] == "HIT"


def test_anonymous_request_on_per_user_view_bypasses(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    first = va.get("/rooms/r1/items", user=None)
    assert first.status_code == 200
    assert first.headers["X-Cache"] == "BYPASS"
    assert va.get("/rooms/r1/items", user=None).headers["X-Cache"] == "BYPASS"
    assert va.get("/rooms/r1/items", user="").headers["X-Cache"] == "BYPASS"
    assert va.calls["items"] == 3


def test_identity_falls_back_to_flask_login(
    views_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    class User:
        def __init__(self, uid: str | None) -> None:
            self.uid = uid
            self.is_authenticated = uid is not None

        def get_id(self) -> str | None:
            return self.uid

    current = {"user": User("alice")}

    class Proxy:
        def __getattr__(self, name: str) -> Any:
            return getattr(current["user"], name)

    fake = types.ModuleType("flask_login")
    fake.current_user = Proxy()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flask_login", fake)
    va: ViewsApp = views_app(identity=False)
    va.app.login_manager = object()  # type: ignore[attr-defined]
    assert va.get("/rooms/r1/items", user="alice").headers["X-Cache"] == "MISS"
    assert va.get("/rooms/r1/items", user="alice").headers["X-Cache"] == "HIT"
    current["user"] = User("bob")
    bob = va.get("/rooms/r1/items", user="bob")
    assert bob.headers["X-Cache"] == "MISS"
    assert bob.get_json()["user"] == "bob"
    current["user"] = User(None)
    assert va.get("/rooms/r1/items", user=None).headers["X-Cache"] == "BYPASS"


def test_identity_registered_per_app_overrides_the_extension(views_app: Any) -> None:
    va: ViewsApp = views_app()
    DataRoomCache.state(va.app).identity = lambda: "fixed"
    assert va.get("/rooms/r1/items", user="alice").headers["X-Cache"] == "MISS"
    assert va.get("/rooms/r1/items", user="bob").headers["X-Cache"] == "HIT"


# -- safety rules ----------------------------------------------------------------------------
def test_cookie_setting_view_is_never_cached(views_app: Any) -> None:
    va: ViewsApp = views_app(SECRET_KEY="s")

    @va.app.get("/cookie")
    @va.cache.cached()
    def cookie() -> Any:
        va.calls["cookie"] += 1
        resp = make_response(jsonify(n=va.calls["cookie"]))
        resp.set_cookie("flavour", "choc")
        return resp

    @va.app.get("/sess")
    @va.cache.cached()
    def sess() -> Any:
        va.calls["sess"] += 1
        session["seen"] = va.calls["sess"]
        return jsonify(n=va.calls["sess"])

    for _ in range(3):
        resp = va.get("/cookie")
        assert resp.headers["X-Cache"] == "MISS"
        assert "flavour=choc" in resp.headers["Set-Cookie"]
        resp = va.get("/sess")
        assert resp.headers["X-Cache"] == "MISS"
        assert "session=" in resp.headers["Set-Cookie"]
    assert va.calls["cookie"] == va.calls["sess"] == 3


def test_cookie_set_after_the_view_is_not_stored(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.after_request
    def tracker(resp: Response) -> Response:
        resp.set_cookie("tracker", "1")
        return resp

    first = va.get("/public/1")
    assert first.headers["X-Cache"] == "MISS"
    hit = va.get("/public/1")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers.getlist("Set-Cookie") == ["tracker=1; Path=/"]  # once, not replayed


def test_after_this_request_in_the_view_is_never_stored(views_app: Any) -> None:
    """Functions the view registers with ``after_this_request`` run on this response
    only, never on a hit: a cookie (or anything) they add would be lost on every hit."""
    va: ViewsApp = views_app()

    @va.app.get("/csrf")
    @va.cache.cached()
    def csrf() -> Any:
        va.calls["csrf"] += 1

        @after_this_request
        def set_token(resp: Response) -> Response:
            resp.set_cookie("csrf", "tok")
            return resp

        return jsonify(ok=1)

    @va.app.get("/stamped")
    @va.cache.cached(shared=True)
    def stamped() -> Any:
        va.calls["stamped"] += 1

        @after_this_request
        def stamp(resp: Response) -> Response:
            resp.headers["X-Stamp"] = "1"
            return resp

        return jsonify(ok=1)

    for _ in range(2):
        resp = va.get("/csrf")
        assert resp.headers["X-Cache"] == "MISS"
        assert resp.headers.getlist("Set-Cookie") == ["csrf=tok; Path=/"]
        resp = va.get("/stamped")
        assert resp.headers["X-Cache"] == "MISS"
        assert resp.headers["X-Stamp"] == "1"
    assert va.calls["csrf"] == va.calls["stamped"] == 2


def test_after_this_request_from_a_before_request_hook_does_not_block(views_app: Any) -> None:
    """Registered by a before_request hook, the function runs on every request, hits
    included: only the ones the view registers make a response unstorable."""
    va: ViewsApp = views_app()

    @va.app.before_request
    def every_request() -> None:
        @after_this_request
        def stamp(resp: Response) -> Response:
            resp.set_cookie("seen", "1")
            return resp

    assert va.get("/public/1").headers["X-Cache"] == "MISS"
    hit = va.get("/public/1")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers.getlist("Set-Cookie") == ["seen=1; Path=/"]


@pytest.mark.parametrize(
    ("cache_control", "path"),
    [("no-store", "/rooms/r1/items"), ("no-store", "/public/1"), ("private", "/public/1")],
)
def test_cache_control_set_by_an_after_request_hook_is_obeyed(
    views_app: Any, cache_control: str, path: str
) -> None:
    """The store decision waits for the final response: an app-wide ``after_request``
    policy (``no-store`` for account data, ``private`` on a shared view) is honoured."""
    va: ViewsApp = views_app()

    @va.app.after_request
    def policy(resp: Response) -> Response:
        resp.headers["Cache-Control"] = cache_control
        return resp

    for _ in range(2):
        resp = va.get(path)
        assert resp.headers["X-Cache"] == "MISS"
        assert resp.headers["Cache-Control"] == cache_control
    assert va.calls["items"] + va.calls["public"] == 2


def test_headers_added_by_after_request_hooks_are_not_stored(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.after_request
    def add_header(resp: Response) -> Response:
        resp.headers.add("X-Hook", "1")  # runs on hits too: storing it would double it
        return resp

    assert va.get("/public/1").headers.getlist("X-Hook") == ["1"]
    hit = va.get("/public/1")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers.getlist("X-Hook") == ["1"]


def test_failure_after_the_view_stores_nothing_and_releases_the_flight(
    views_app: Any,
) -> None:
    """An after-request hook that raises: the final response is never known, so the
    pending fill is dropped at teardown and the single flight (and lock) released."""

    va: ViewsApp = views_app()
    fail = [True]

    @va.app.after_request
    def flaky(resp: Response) -> Response:
        if fail and fail.pop():
            raise RuntimeError("hook failed")
        return resp

    @va.app.get("/locked")
    @va.cache.cached(shared=True, lock=True)
    def locked() -> Any:
        va.calls["locked"] += 1
        return jsonify(n=va.calls["locked"])

    with pytest.raises(RuntimeError, match="hook failed"):
        va.get("/locked")
    flights = DataRoomCache.state(va.app).views.flights
    assert flights._running == {}
    resp = va.get("/locked")
    assert resp.headers["X-Cache"] == "MISS"  # not stored, and the lock was free
    assert resp.get_json() == {"n": 2}
    assert va.get("/locked").headers["X-Cache"] == "HIT"


@pytest.mark.parametrize(
    ("cache_control", "shared", "stored"),
    [
        ("no-store", False, False),
        ("no-store", True, False),
        ("private, max-age=0", True, False),
        ("Private", True, False),
        ("private, max-age=60", False, True),
        ("public, max-age=60", True, True),
    ],
)
def test_cache_control_rules(
    views_app: Any, cache_control: str, shared: bool, stored: bool
) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/cc")
    @va.cache.cached(shared=shared)
    def cc() -> Any:
        va.calls["cc"] += 1
        resp = jsonify(n=va.calls["cc"])
        resp.headers["Cache-Control"] = cache_control
        return resp

    assert va.get("/cc").headers["X-Cache"] == "MISS"
    second = va.get("/cc")
    assert second.headers["X-Cache"] == ("HIT" if stored else "MISS")
    assert second.headers["Cache-Control"] == cache_control


def test_default_cache_control(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/own")
    @va.cache.cached(shared=True, cache_control="public, max-age=30")
    def own() -> Any:
        return jsonify(ok=True)

    assert va.get("/rooms/r1/items").headers["Cache-Control"] == "private, no-cache"
    assert va.get("/rooms/r1/items").headers["Cache-Control"] == "private, no-cache"
    assert va.get("/public/1").headers["Cache-Control"] == "no-cache"
    assert va.get("/own").headers["Cache-Control"] == "public, max-age=30"
    assert va.get("/own").headers["Cache-Control"] == "public, max-age=30"


def test_skip_inside_view_prevents_storing(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)

    @va.app.get("/maybe/<int:n>")
    @va.cache.cached()
    @flavour(view_kind)
    def maybe(n: int) -> Any:
        va.calls["maybe"] += 1
        if n == 0:
            va.cache.skip()
        return jsonify(n=n)

    assert va.get("/maybe/0").headers["X-Cache"] == "MISS"
    assert va.get("/maybe/0").headers["X-Cache"] == "MISS"
    assert va.get("/maybe/1").headers["X-Cache"] == "MISS"
    assert va.get("/maybe/1").headers["X-Cache"] == "HIT"
    assert va.calls["maybe"] == 3


@pytest.mark.parametrize("status", [201, 204, 301, 401, 403, 404, 500])
def test_only_200_is_stored(views_app: Any, status: int, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)

    @va.app.get("/status")
    @va.cache.cached(shared=True)
    @flavour(view_kind)
    def status_view() -> Any:
        va.calls["status"] += 1
        return Response("x" if status != 204 else "", status=status)

    for _ in range(2):
        resp = va.get("/status")
        assert resp.status_code == status
        assert resp.headers["X-Cache"] == "MISS"
    assert va.calls["status"] == 2


def test_aborted_view_is_not_stored(views_app: Any) -> None:
    from flask import abort

    va: ViewsApp = views_app()

    @va.app.get("/gone")
    @va.cache.cached(shared=True)
    def gone() -> Any:
        va.calls["gone"] += 1
        abort(404)

    assert va.get("/gone").status_code == 404
    assert va.get("/gone").status_code == 404
    assert va.calls["gone"] == 2


def test_streamed_and_passthrough_responses_are_not_stored(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/stream")
    @va.cache.cached(shared=True)
    def stream() -> Any:
        va.calls["stream"] += 1

        def gen() -> Any:
            yield "a"
            yield "b"

        return Response(stream_with_context(gen()))

    @va.app.get("/passthrough")
    @va.cache.cached(shared=True)
    def passthrough() -> Any:
        va.calls["passthrough"] += 1
        return Response([b"abc"], direct_passthrough=True)

    for _ in range(2):
        resp = va.get("/stream")
        assert resp.data == b"ab"
        assert resp.headers["X-Cache"] == "MISS"
        resp = va.get("/passthrough")
        assert resp.data == b"abc"
        assert resp.headers["X-Cache"] == "MISS"
    assert va.calls["stream"] == va.calls["passthrough"] == 2


def test_authorization_never_served_or_stored_on_shared_views(views_app: Any) -> None:
    va: ViewsApp = views_app()
    assert va.get("/public/1", user=None).headers["X-Cache"] == "MISS"
    assert va.get("/public/1", user=None).headers["X-Cache"] == "HIT"
    auth = {"Authorization": "Bearer secret"}
    resp = va.get("/public/1", user=None, headers=auth)
    assert resp.headers["X-Cache"] == "BYPASS"
    assert resp.get_json()["n"] == 2
    assert va.get("/public/2", user=None, headers=auth).headers["X-Cache"] == "BYPASS"
    assert va.get("/public/2", user=None).headers["X-Cache"] == "MISS"  # nothing was stored
    # per-user views serve with Authorization: the identity is in the key
    assert va.get("/rooms/r1/items", headers=auth).headers["X-Cache"] == "MISS"
    assert va.get("/rooms/r1/items", headers=auth).headers["X-Cache"] == "HIT"


# -- conditional requests and HEAD ------------------------------------------------------------
def test_if_none_match_gives_304_on_hit(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    etag = va.get("/rooms/r1/items").headers["ETag"]
    resp = va.get("/rooms/r1/items", headers={"If-None-Match": etag})
    assert resp.status_code == 304
    assert resp.data == b""
    assert resp.headers["ETag"] == etag
    assert resp.headers["X-Cache"] == "HIT"
    assert resp.headers["Cache-Control"] == "private, no-cache"
    for header in (f'"nope", {etag}', f"W/{etag}", "*"):
        assert va.get("/rooms/r1/items", headers={"If-None-Match": header}).status_code == 304
    other = va.get("/rooms/r1/items", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200
    assert other.headers["X-Cache"] == "HIT"


def test_if_none_match_gives_304_on_miss_when_fresh_etag_matches(
    views_app: Any, view_kind: str
) -> None:
    va: ViewsApp = views_app(kind=view_kind)

    @va.app.get("/stable")
    @va.cache.cached(shared=True, tags=["stable"])
    @flavour(view_kind)
    def stable() -> Any:
        va.calls["stable"] += 1
        return jsonify(same=True)

    etag = va.get("/stable").headers["ETag"]
    with va.app.app_context():
        va.cache.invalidate_tags("stable")
    resp = va.get("/stable", headers={"If-None-Match": etag})
    assert resp.status_code == 304
    assert resp.headers["X-Cache"] == "MISS"
    assert va.calls["stable"] == 2
    assert va.get("/stable").headers["X-Cache"] == "HIT"  # the miss stored the entry


def test_304_on_miss_keeps_the_views_cookies(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/prefs")
    @va.cache.cached()
    def prefs() -> Any:
        va.calls["prefs"] += 1
        resp = make_response(jsonify(theme="dark"))
        resp.set_cookie("seen", "1")
        return resp

    first = va.get("/prefs")
    assert first.headers.getlist("Set-Cookie") == ["seen=1; Path=/"]
    again = va.get("/prefs", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers["X-Cache"] == "MISS"  # never stored: it sets a cookie
    assert again.headers.getlist("Set-Cookie") == ["seen=1; Path=/"]
    assert va.calls["prefs"] == 2


def test_head_is_served_from_the_get_entry(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    get = va.get("/rooms/r1/items")
    head = va.app.test_client().head("/rooms/r1/items", headers={"X-User-Id": "u1"})
    assert head.status_code == 200
    assert head.headers["X-Cache"] == "HIT"
    assert head.data == b""
    assert head.headers["ETag"] == get.headers["ETag"]
    assert head.headers["Content-Length"] == str(len(get.data))
    assert va.calls["items"] == 1


def test_head_miss_is_not_stored(views_app: Any) -> None:
    va: ViewsApp = views_app()
    head = va.app.test_client().head("/rooms/r1/items", headers={"X-User-Id": "u1"})
    assert head.headers["X-Cache"] == "MISS"
    assert va.get("/rooms/r1/items").headers["X-Cache"] == "MISS"
    assert va.get("/rooms/r1/items").headers["X-Cache"] == "HIT"


# -- tags -------------------------------------------------------------------------------------
def test_tag_invalidation_makes_the_next_request_a_miss(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    va.get("/rooms/r1/items")
    va.get("/rooms/r2/items")
    with va.app.app_context():
        va.cache.invalidate_tags("dataroom:r1")
    r1 = va.get("/rooms/r1/items")
    assert r1.headers["X-Cache"] == "MISS"
    assert r1.get_json()["n"] == 3
    assert va.get("/rooms/r2/items").headers["X-Cache"] == "HIT"
    assert va.get("/rooms/r1/items").headers["X-Cache"] == "HIT"


def test_static_tags_and_user_tag(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    va.get("/public/1")
    va.get("/rooms/r1/items", user="alice")
    va.get("/rooms/r1/items", user="bob")
    with va.app.app_context():
        va.cache.invalidate_tags(user_tag("alice"))
    assert va.get("/rooms/r1/items", user="alice").headers["X-Cache"] == "MISS"
    assert va.get("/rooms/r1/items", user="bob").headers["X-Cache"] == "HIT"
    assert va.get("/public/1").headers["X-Cache"] == "HIT"  # shared: no user tag
    with va.app.app_context():
        va.cache.invalidate_tags("public")
    assert va.get("/public/1").headers["X-Cache"] == "MISS"


def test_tags_callable_may_read_the_request(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)

    @va.app.get("/rooms/<room_id>/folders")
    @va.cache.cached(
        tags=flavour(view_kind)(
            lambda room_id: [f"dataroom:{room_id}", f"folder:{request.args.get('p', 'root')}"]
        )
    )
    @flavour(view_kind)
    def folders(room_id: str) -> Any:
        va.calls["folders"] += 1
        return jsonify(room=room_id, parent=request.args.get("p"))

    va.get("/rooms/r1/folders?p=f1")
    va.get("/rooms/r1/folders?p=f2")
    with va.app.app_context():
        va.cache.invalidate_tags("folder:f1")
    assert va.get("/rooms/r1/folders?p=f1").headers["X-Cache"] == "MISS"
    assert va.get("/rooms/r1/folders?p=f2").headers["X-Cache"] == "HIT"


def test_tags_callable_returning_a_string_is_an_error(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/bad")
    @va.cache.cached(shared=True, tags=lambda: "oops")
    def bad() -> Any:
        return "x"

    with pytest.raises(TypeError, match="returned a string"):
        va.get("/bad")


def test_bad_options_fail_at_decoration() -> None:
    cache = DataRoomCache()
    with pytest.raises(ValueError):
        cache.cached(timeout=0)
    with pytest.raises(ValueError):
        cache.cached(stale_while_revalidate=-1)
    with pytest.raises(TypeError):
        cache.cached(tags="folder:1")  # type: ignore[arg-type]


# -- bypasses ----------------------------------------------------------------------------------
def test_unless_bypasses(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)

    @va.app.get("/u")
    @va.cache.cached(
        shared=True, unless=flavour(view_kind)(lambda: request.args.get("fresh") == "1")
    )
    @flavour(view_kind)
    def u() -> Any:
        va.calls["u"] += 1
        return jsonify(n=va.calls["u"])

    assert va.get("/u?fresh=1").headers["X-Cache"] == "BYPASS"
    assert va.get("/u?fresh=1").headers["X-Cache"] == "BYPASS"
    assert va.get("/u").headers["X-Cache"] == "MISS"
    assert va.get("/u").headers["X-Cache"] == "HIT"


def test_client_no_cache_ignored_by_default(views_app: Any) -> None:
    va: ViewsApp = views_app()
    va.get("/public/1")
    resp = va.get("/public/1", headers={"Cache-Control": "no-cache"})
    assert resp.headers["X-Cache"] == "HIT"


def test_client_no_cache_honoured_when_enabled_and_refills(views_app: Any) -> None:
    va: ViewsApp = views_app(CACHE_HONOR_NO_CACHE=True)
    va.get("/public/1")
    resp = va.get("/public/1", headers={"Cache-Control": "no-cache"})
    assert resp.headers["X-Cache"] == "BYPASS"
    assert resp.get_json()["n"] == 2
    assert va.get("/public/1", headers={"Pragma": "no-cache"}).headers["X-Cache"] == "BYPASS"
    hit = va.get("/public/1")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.get_json()["n"] == 3  # the forced fresh read refilled the entry


def test_store_bypass_hook_bypasses_and_never_fills(views_app: Any, view_kind: str) -> None:
    va: ViewsApp = views_app(kind=view_kind)
    va.get("/public/1")
    flag = {"on": True}
    va.store.bypass_checks.append(lambda: flag["on"])
    assert va.get("/public/1").headers["X-Cache"] == "BYPASS"
    assert va.get("/public/2").headers["X-Cache"] == "BYPASS"
    flag["on"] = False
    assert va.get("/public/1").headers["X-Cache"] == "HIT"
    assert va.get("/public/2").headers["X-Cache"] == "MISS"


def test_disabled_cache_bypasses(views_app: Any) -> None:
    va: ViewsApp = views_app(CACHE_ENABLED=False)
    assert va.get("/public/1").headers["X-Cache"] == "BYPASS"
    assert va.get("/public/1").headers["X-Cache"] == "BYPASS"
    assert va.calls["public"] == 2


# -- metrics and failures -----------------------------------------------------------------------
def test_metrics_per_endpoint(views_app: Any) -> None:
    va: ViewsApp = views_app()
    va.get("/rooms/r1/items")
    va.get("/rooms/r1/items")
    va.get("/rooms/r1/items")
    va.get("/public/1", headers={"Authorization": "x"})
    with va.app.app_context():
        stats = va.cache.stats()
    assert stats["endpoints"]["items"]["hits"] == 2
    assert stats["endpoints"]["items"]["misses"] == 1
    assert stats["endpoints"]["items"]["sets"] == 1
    assert stats["endpoints"]["public"]["bypasses"] == 1


@pytest.mark.parametrize("error", [BackendError("down"), ConnectionError("weird")])
def test_backend_errors_never_fail_a_request(
    views_app: Any, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    va: ViewsApp = views_app()
    va.get("/public/1")
    backend = va.store.backend

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise error

    for name in ("get", "set", "versions", "add", "delete"):
        monkeypatch.setattr(backend, name, boom)
    for path in ("/public/1", "/rooms/r1/items"):
        resp = va.get(path)
        assert resp.status_code == 200
        assert resp.headers["X-Cache"] == "MISS"


def test_corrupt_entry_is_a_miss(views_app: Any) -> None:
    va: ViewsApp = views_app()
    va.get("/public/1")
    store = va.store
    with va.app.test_request_context("/public/1"):
        from flask_dataroom_cache.keys import build_key

        key = build_key(
            store.settings.key_prefix, "~view", "public", {"page": 1, "~h": "localhost"}
        )
        assert store.get(key) is not None
        store.set(key, b'DRV2\nnot-a-number\n"e"\n\nbody')
    resp = va.get("/public/1")
    assert resp.headers["X-Cache"] == "MISS"
    assert va.get("/public/1").headers["X-Cache"] == "HIT"


def test_called_outside_a_request_just_runs(views_app: Any) -> None:
    va: ViewsApp = views_app()
    view = va.app.view_functions["public"]
    with va.app.app_context():
        assert view(page=3).get_json()["page"] == 3


def test_skip_does_not_leak_into_the_next_request_of_one_app_context(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/once/<int:n>")
    @va.cache.cached()
    def once(n: int) -> Any:
        if n == 0:
            va.cache.skip()
        return jsonify(n=n)

    with va.app.app_context():  # requests reuse this app context (and its ``g``)
        assert va.get("/once/0").headers["X-Cache"] == "MISS"
        assert va.get("/once/1").headers["X-Cache"] == "MISS"
        assert va.get("/once/1").headers["X-Cache"] == "HIT"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"DRV2",
        b'DRV2\n1e12\n"e"\nno-blank-line',
        b'DRV2\nnan-ish\n"e"\n\nbody',
        b"DRV2\n1e12\n\n\nbody",  # empty etag
        b'DRV2\n1e12\n"e"\nNoColon\n\nbody',
        b'DRV2\n1e12\n"e"\n:novalue\n\nbody',
        b'DRV2\n1e12\n"e"\nX-Bad:a\rb\n\nbody',
        b'DRV2\n1e12\n"e"\nX:\xff\xfe\n\nbody',
        b"DRV1{}\nbody",
        "not bytes",
        {"h": []},
    ],
)
def test_foreign_or_broken_entries_never_parse(payload: Any) -> None:
    from flask_dataroom_cache.views.entry import unpack as _unpack

    assert _unpack(payload) is None


def test_entry_round_trip() -> None:
    from flask_dataroom_cache.views.entry import pack as _pack
    from flask_dataroom_cache.views.entry import unpack as _unpack

    headers = [("Content-Type", "application/json"), ("X-Empty", ""), ("X-Colon", "a:b")]
    entry = _unpack(_pack(headers, '"tag"', 123.5, b"\n\nbody\n\n"))
    assert entry == (123.5, '"tag"', headers, b"\n\nbody\n\n")


def test_unhashable_or_exotic_view_args_still_get_a_key(views_app: Any) -> None:
    import uuid as uuid_module

    va: ViewsApp = views_app()

    @va.app.get("/u/<uuid:uid>/<path:rest>")
    @va.cache.cached(shared=True)
    def by_uuid(uid: uuid_module.UUID, rest: str) -> Any:
        va.calls["uuid"] += 1
        return jsonify(uid=str(uid), rest=rest)

    u = uuid_module.uuid4()
    assert va.get(f"/u/{u}/a/b:c").headers["X-Cache"] == "MISS"
    assert va.get(f"/u/{u}/a/b:c").headers["X-Cache"] == "HIT"
    assert va.get(f"/u/{u}/a/b%3Ac").headers["X-Cache"] == "HIT"  # same decoded path
    assert va.get(f"/u/{u}/a:b/c").headers["X-Cache"] == "MISS"


def test_bad_tag_is_a_programming_error_not_a_miss(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/badtag")
    @va.cache.cached(shared=True, tags=["ok", ""])
    def badtag() -> Any:
        return "x"

    with pytest.raises(ValueError, match="invalid tag"):
        va.get("/badtag")


def test_view_on_an_app_without_init_app_says_so() -> None:
    from flask import Flask

    cache = DataRoomCache()
    app = Flask("bare")
    app.config["TESTING"] = True

    @app.get("/x")
    @cache.cached(shared=True)
    def x() -> Any:
        return "x"

    with pytest.raises(RuntimeError, match="init_app"):
        app.test_client().get("/x")
