"""``assert_hit`` / ``assert_miss`` / ``assert_bypass``: the X-Cache header, and failure
messages that show the header, what it means and the request."""

from __future__ import annotations

import pytest
from flask import Response

from flask_dataroom_cache.testing import assert_bypass, assert_hit, assert_miss, x_cache

from .conftest import NotesApp


def test_hit_miss_bypass(notes_app: NotesApp) -> None:
    first = notes_app.get("/folders/1/notes")
    assert_miss(first)
    assert_hit(notes_app.get("/folders/1/notes"))
    with notes_app.cache.disabled():
        assert_bypass(notes_app.get("/folders/1/notes"))
    assert x_cache(first) == "MISS"


def test_messages(notes_app: NotesApp) -> None:
    miss = notes_app.get("/folders/1/notes?x=1")
    with pytest.raises(AssertionError) as info:
        assert_hit(miss)
    message = str(info.value)
    assert message.startswith("expected X-Cache: HIT, got MISS: computed by the view")
    assert "GET /folders/1/notes?x=1 -> 200 OK, X-Cache: MISS, body b'" in message

    with pytest.raises(AssertionError, match="got HIT: served from a cached entry"):
        assert_miss(notes_app.get("/folders/1/notes?x=1"))
    with notes_app.cache.disabled():
        bypass = notes_app.get("/folders/1/notes")
    with pytest.raises(AssertionError, match="got BYPASS: the cache was not used"):
        assert_hit(bypass)


def test_no_header() -> None:
    plain = Response("x" * 500)
    with pytest.raises(AssertionError) as info:
        assert_hit(plain)
    message = str(info.value)
    assert "got (no header): no X-Cache header: the route is not decorated" in message
    assert "200 OK, X-Cache: (none), body b'xxx" in message
    assert message.endswith("x" * 200 + "...'")  # the body is cut at 200 bytes
    with pytest.raises(TypeError):
        x_cache("not a response")
