"""Conditional-request and Cache-Control headers are parsed with werkzeug's parsers
(quoted ETags may contain commas; quoted directive values too), and every header line
counts (issue 12 item 8)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Response, jsonify

from .conftest import ViewsApp


def _etag_app(views_app: Any, etag: str) -> ViewsApp:
    va: ViewsApp = views_app()

    @va.app.get("/tagged")
    @va.cache.cached(shared=True)
    def tagged() -> Any:
        va.calls["tagged"] += 1
        resp = jsonify(n=1)
        resp.headers["ETag"] = etag
        return resp

    return va


@pytest.mark.parametrize("hit", [False, True], ids=["miss", "hit"])
@pytest.mark.parametrize(
    ("etag", "if_none_match", "matches"),
    [
        ('"a,b"', '"a,b"', True),  # a comma inside the quotes is part of the tag
        ('"a,b"', '"x", "a,b"', True),
        ('"a,b"', '"a"', False),
        ('"a,b"', '"b"', False),
        ('"a, b"', 'W/"a, b"', True),  # weak comparison (RFC 9110 for If-None-Match)
        ('W/"v1"', '"v1"', True),
        ('W/"v1"', 'W/"v1"', True),
        ('W/"v1"', '"v2"', False),
        ('"v1"', "*", True),
    ],
)
def test_if_none_match_parsed_as_a_list_of_quoted_tags(
    views_app: Any, etag: str, if_none_match: str, matches: bool, hit: bool
) -> None:
    va = _etag_app(views_app, etag)
    if hit:
        assert va.get("/tagged").headers["X-Cache"] == "MISS"
    resp = va.get("/tagged", headers={"If-None-Match": if_none_match})
    assert resp.headers["X-Cache"] == ("HIT" if hit else "MISS")
    assert resp.status_code == (304 if matches else 200)
    if matches:
        assert resp.headers["ETag"] == etag


@pytest.mark.parametrize("hit", [False, True], ids=["miss", "hit"])
def test_several_if_none_match_lines_are_all_read(views_app: Any, hit: bool) -> None:
    va = _etag_app(views_app, '"a,b"')
    if hit:
        va.get("/tagged")
    lines = [("If-None-Match", '"zz"'), ("If-None-Match", '"a,b"'), ("X-User-Id", "u1")]
    resp = va.app.test_client().get("/tagged", headers=lines)
    assert resp.status_code == 304
    lines = [("If-None-Match", '"zz"'), ("If-None-Match", 'W/"a"'), ("X-User-Id", "u1")]
    assert va.app.test_client().get("/tagged", headers=lines).status_code == 200


def test_unquoted_etag_of_the_view_is_quoted(views_app: Any) -> None:
    """An ETag header the view set without quotes is sent (and compared) quoted."""
    va = _etag_app(views_app, "v1")
    resp = va.get("/tagged")
    assert resp.headers["ETag"] == '"v1"'
    assert va.get("/tagged", headers={"If-None-Match": '"v1"'}).status_code == 304


def _cc_app(views_app: Any, lines: list[str], shared: bool = True) -> ViewsApp:
    va: ViewsApp = views_app()

    @va.app.get("/cc")
    @va.cache.cached(shared=shared)
    def cc() -> Any:
        va.calls["cc"] += 1
        resp = Response("body")
        for line in lines:
            resp.headers.add("Cache-Control", line)
        return resp

    return va


@pytest.mark.parametrize(
    ("lines", "shared", "stored"),
    [
        (["public, max-age=60", "private"], True, False),
        (["public, max-age=60", "no-store"], True, False),
        (["max-age=60", "no-store"], False, False),
        (["max-age=60", "private"], False, True),
        (["max-age=60", "Private"], True, False),
        # a quoted directive value is one value, commas and all
        (['public, x-note="a, no-store, b"'], True, True),
        (['public, x-note="a, private"'], True, True),
        (['no-cache="Set-Cookie, X-Private"', "max-age=60"], True, True),
    ],
)
def test_every_cache_control_line_is_parsed(
    views_app: Any, lines: list[str], shared: bool, stored: bool
) -> None:
    va = _cc_app(views_app, lines, shared)
    assert va.get("/cc").headers["X-Cache"] == "MISS"
    assert va.get("/cc").headers["X-Cache"] == ("HIT" if stored else "MISS")


@pytest.mark.parametrize(
    ("lines", "stored"),
    [(["max-age=60", "no-store"], False), (['max-age=60, x-note="a, no-store"'], True)],
)
def test_cache_control_added_after_the_view_is_parsed_the_same_way(
    views_app: Any, lines: list[str], stored: bool
) -> None:
    """An after-request hook's Cache-Control lines (the final response) count too."""
    va: ViewsApp = views_app()

    @va.app.after_request
    def add_cc(resp: Response) -> Response:
        for line in lines:
            resp.headers.add("Cache-Control", line)
        return resp

    @va.app.get("/p")
    @va.cache.cached(shared=True)
    def p() -> Any:
        return Response("body")

    va.get("/p")
    assert va.get("/p").headers["X-Cache"] == ("HIT" if stored else "MISS")


@pytest.mark.parametrize(
    ("value", "bypass"),
    [("no-cache", True), ("max-age=0, No-Cache", True), ('x-note="no-cache"', False)],
)
def test_client_no_cache_parsed(views_app: Any, value: str, bypass: bool) -> None:
    va: ViewsApp = views_app(CACHE_HONOR_NO_CACHE=True)
    va.get("/public/1")
    resp = va.get("/public/1", headers={"Cache-Control": value})
    assert resp.headers["X-Cache"] == ("BYPASS" if bypass else "HIT")
