"""Credentials on cached views (issue 12 item 6c): the ``ignore_authorization`` opt-in of
shared views, the unchanged cookie/session rule, and a flask-jwt-extended style identity
(optional JWT) with a stand-in for the library (no dependency needed)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import abort, jsonify, request, session

from .conftest import ViewsApp

AUTH = {"Authorization": "Bearer u1.ok"}


def _public_app(views_app: Any, **opts: Any) -> ViewsApp:
    va: ViewsApp = views_app()

    @va.app.get("/tags")
    @va.cache.cached(shared=True, **opts)
    def tags() -> Any:
        va.calls["tags"] += 1
        return jsonify(tags=["a", "b"], n=va.calls["tags"])

    return va


def test_shared_view_bypasses_authorization_by_default(views_app: Any) -> None:
    va = _public_app(views_app)
    assert va.get("/tags", user=None).headers["X-Cache"] == "MISS"
    assert va.get("/tags", user=None, headers=AUTH).headers["X-Cache"] == "BYPASS"


def test_ignore_authorization_serves_logged_in_readers(views_app: Any) -> None:
    va = _public_app(views_app, ignore_authorization=True)
    assert va.get("/tags", user=None).headers["X-Cache"] == "MISS"
    resp = va.get("/tags", user=None, headers=AUTH)
    assert resp.headers["X-Cache"] == "HIT"
    assert resp.get_json()["n"] == 1
    other = {"Authorization": "Bearer u2.ok"}
    assert va.get("/tags", user=None, headers=other).get_json()["n"] == 1
    assert va.calls["tags"] == 1


def test_ignore_authorization_fills_from_a_logged_in_reader(views_app: Any) -> None:
    va = _public_app(views_app, ignore_authorization=True)
    assert va.get("/tags", user=None, headers=AUTH).headers["X-Cache"] == "MISS"
    resp = va.get("/tags", user=None)  # anonymous: the same entry
    assert resp.headers["X-Cache"] == "HIT"
    assert va.calls["tags"] == 1


def test_ignore_authorization_needs_a_shared_view(views_app: Any) -> None:
    va: ViewsApp = views_app()
    with pytest.raises(ValueError, match="ignore_authorization"):
        va.cache.cached(ignore_authorization=True)


def test_ignore_authorization_still_refuses_vary_authorization(views_app: Any) -> None:
    """A response announcing ``Vary: Authorization`` depends on it: not stored unless
    the header is in the key (``vary=``)."""
    va: ViewsApp = views_app()

    @va.app.get("/me-ish")
    @va.cache.cached(shared=True, ignore_authorization=True)
    def me_ish() -> Any:
        va.calls["me"] += 1
        resp = jsonify(n=va.calls["me"])
        resp.vary.add("Authorization")
        return resp

    va.get("/me-ish", user=None, headers=AUTH)
    assert va.get("/me-ish", user=None, headers=AUTH).headers["X-Cache"] == "MISS"


@pytest.mark.parametrize("auth", [False, True])
def test_session_rule_unchanged_by_ignore_authorization(views_app: Any, auth: bool) -> None:
    """Cookies follow one rule with or without the opt-in: a Cookie never bypasses a
    shared view, and a response computed while the session was read is not stored."""
    va: ViewsApp = views_app(SECRET_KEY="s")

    @va.app.get("/greeting")
    @va.cache.cached(shared=True, ignore_authorization=True)
    def greeting() -> Any:
        va.calls["greeting"] += 1
        return jsonify(hello=session.get("name", "stranger"))

    headers = dict(AUTH) if auth else {}
    assert va.get("/greeting", user=None, headers=headers).headers["X-Cache"] == "MISS"
    assert va.get("/greeting", user=None, headers=headers).headers["X-Cache"] == "MISS"
    assert va.calls["greeting"] == 2


def test_nested_shared_view_without_the_opt_in_keeps_the_outer_from_storing(
    views_app: Any,
) -> None:
    """A shared cached function that did not opt in may answer differently to an
    ``Authorization`` header: an outer entry built from it with one is not stored."""
    va: ViewsApp = views_app()

    @va.cache.cached(shared=True, tags=["counts"])
    def counts() -> Any:
        va.calls["counts"] += 1
        return jsonify(private="Authorization" in request.headers)

    @va.app.get("/page")
    @va.cache.cached(shared=True, tags=["counts"], ignore_authorization=True)
    def page() -> Any:
        va.calls["page"] += 1
        return counts()

    assert va.get("/page", user=None, headers=AUTH).headers["X-Cache"] == "MISS"
    assert va.get("/page", user=None, headers=AUTH).headers["X-Cache"] == "MISS"
    assert va.get("/page", user=None).headers["X-Cache"] == "MISS"
    assert va.get("/page", user=None).headers["X-Cache"] == "HIT"
    assert va.get("/page", user=None, headers=AUTH).get_json() == {"private": False}


# -- a flask-jwt-extended identity (docs/identity.md), with a stand-in for the library --------
class _Jwt:
    """What the recipe uses of flask-jwt-extended: ``verify_jwt_in_request(optional=True)``
    (no token: fine; a bad one: 401) and ``get_jwt_identity()`` (None when anonymous)."""

    @staticmethod
    def verify_jwt_in_request(optional: bool = False) -> None:
        header = request.headers.get("Authorization")
        if header is None:
            if not optional:
                abort(401)
            request.environ["jwt.identity"] = None
            return
        scheme, _, token = header.partition(" ")
        user, _, signature = token.partition(".")
        if scheme != "Bearer" or signature != "ok":
            abort(401)  # flask-jwt-extended: invalid or expired token, even with optional
        request.environ["jwt.identity"] = user

    @staticmethod
    def get_jwt_identity() -> Any:
        return request.environ.get("jwt.identity")


def test_jwt_identity_recipe(make_app: Any) -> None:
    app, cache = make_app()
    calls = {"feed": 0, "tags": 0}
    jwt = _Jwt

    @cache.identity
    def current_user_id() -> Any:
        jwt.verify_jwt_in_request(optional=True)
        return jwt.get_jwt_identity()  # None: anonymous

    @app.get("/feed")
    @cache.cached(tags=["articles"])
    def feed() -> Any:
        calls["feed"] += 1
        return jsonify(user=jwt.get_jwt_identity(), n=calls["feed"])

    @app.get("/tags")
    @cache.cached(shared=True, ignore_authorization=True, tags=["tags"])
    def tags() -> Any:
        calls["tags"] += 1
        return jsonify(n=calls["tags"])

    client = app.test_client()
    u1 = {"Authorization": "Bearer u1.ok"}
    u2 = {"Authorization": "Bearer u2.ok"}
    # per-user view: each user their own entry; anonymous readers always run the view
    assert client.get("/feed", headers=u1).headers["X-Cache"] == "MISS"
    hit = client.get("/feed", headers=u1)
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.get_json() == {"user": "u1", "n": 1}
    assert client.get("/feed", headers=u2).get_json() == {"user": "u2", "n": 2}
    for _ in range(2):
        anon = client.get("/feed")
        assert anon.headers["X-Cache"] == "BYPASS"
        assert anon.get_json()["user"] is None
    # a bad token is refused before anything is read or stored
    assert client.get("/feed", headers={"Authorization": "Bearer u1.forged"}).status_code == 401
    # shared view with the opt-in: one entry for everybody, logged in or not
    assert client.get("/tags").headers["X-Cache"] == "MISS"
    assert client.get("/tags", headers=u1).headers["X-Cache"] == "HIT"
    assert client.get("/tags", headers=u2).headers["X-Cache"] == "HIT"
    assert calls == {"feed": 4, "tags": 1}
