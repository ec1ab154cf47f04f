"""A cached function returns what it returns (issue 12 item 5).

``@cache.cached`` on a helper a plain view calls used to hand back a ``Response`` (the
cache's rendering of the value), while the same helper returned its ``list`` inside a
cached view, outside a request, or for a POST. Now the value is the function's, in
every context, hit or miss: a value that comes back from the codec identical (type and
value) is cached, anything else is returned as is and not cached (one warning); a
``Response`` stays a ``Response``.
"""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from flask import Response, jsonify, request

from flask_dataroom_cache import invalidate_tags

from .conftest import ViewsApp


def _collect(va: ViewsApp, fn: Any, *args: Any) -> list[Any]:
    """What ``fn(*args)`` returns in every context: outside a request, called by a plain
    GET view (miss, then hit), by a cached view, and by a POST view."""
    seen: list[Any] = []

    @va.app.route("/plain", methods=["GET", "POST"])
    def plain() -> Any:
        seen.append(fn(*args))
        return "ok"

    @va.app.get("/cached")
    @va.cache.cached(shared=True, tags=["room:1"])
    def cached_view() -> Any:
        seen.append(fn(*args))
        return "ok"

    with va.app.app_context():
        seen.append(fn(*args))
    for _ in range(2):
        assert va.get("/plain").status_code == 200
    assert va.get("/cached").status_code == 200
    assert va.app.test_client().post("/plain").status_code == 200
    return seen


@pytest.mark.parametrize(
    "value",
    [
        [{"id": 1, "name": "minutes"}, {"id": 2, "name": "budget"}],
        {"total": 3, "tags": ["a", "b"], "ratio": 0.5, "none": None},
        "a string",
        b"some bytes",
        42,
        None,
        [date(2026, 1, 2), Decimal("1.50")],
    ],
    ids=["list", "dict", "str", "bytes", "int", "none", "tagged-types"],
)
def test_cached_function_returns_its_value_in_every_context(views_app: Any, value: Any) -> None:
    va: ViewsApp = views_app()

    @va.cache.cached(shared=True, tags=["room:1"])
    def rows() -> Any:
        va.calls["rows"] += 1
        return value

    seen = _collect(va, rows)
    assert len(seen) == 5
    for got in seen:
        assert type(got) is type(value)
        assert got == value
    # outside a request, the GET miss, the cached view and the POST ran it; the second
    # GET was a hit
    assert va.calls["rows"] == 4


def test_function_value_is_keyed_by_arguments_and_invalidated_by_tags(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.cache.cached(shared=True, tags=lambda room_id: [f"room:{room_id}"])
    def names(room_id: int) -> list[str]:
        va.calls[f"names{room_id}"] += 1
        return [f"doc {room_id}.{va.calls[f'names{room_id}']}"]

    @va.app.get("/page")
    def page() -> Any:
        return jsonify(a=names(1), b=names(2))

    assert va.get("/page").get_json() == {"a": ["doc 1.1"], "b": ["doc 2.1"]}
    assert va.get("/page").get_json() == {"a": ["doc 1.1"], "b": ["doc 2.1"]}
    with va.app.app_context():
        invalidate_tags("room:1")
    assert va.get("/page").get_json() == {"a": ["doc 1.2"], "b": ["doc 2.1"]}


def test_hit_returns_a_fresh_copy(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.cache.cached(shared=True)
    def rows() -> list[int]:
        return [1, 2]

    @va.app.get("/page")
    def page() -> Any:
        got = rows()
        got.append(3)  # the caller owns what it gets
        return jsonify(got)

    for _ in range(3):
        assert va.get("/page").get_json() == [1, 2, 3]


class Thing:
    def __init__(self, n: int) -> None:
        self.n = n


@pytest.mark.parametrize(
    "make",
    [
        lambda: (1, 2),  # a tuple would come back as a list
        lambda: {1: "one"},  # an int key would come back as a str
        lambda: Thing(1),  # not JSON at all
        lambda: [Thing(1)],
    ],
    ids=["tuple", "int-keys", "object", "list-of-objects"],
)
def test_value_the_codec_would_change_is_returned_as_is_and_not_cached(
    views_app: Any, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    va: ViewsApp = views_app()
    returned: list[Any] = []

    @va.cache.cached(shared=True)
    def value() -> Any:
        va.calls["value"] += 1
        out = make()
        returned.append(out)
        return out

    got: list[Any] = []

    @va.app.get("/page")
    def page() -> Any:
        got.append(value())
        return "ok"

    with caplog.at_level(logging.WARNING, logger="flask_dataroom_cache"):
        for _ in range(3):
            assert va.get("/page").status_code == 200
    assert va.calls["value"] == 3
    assert all(g is r for g, r in zip(got, returned, strict=True))
    warnings = [r for r in caplog.records if "not caching" in r.getMessage()]
    assert len(warnings) == 1


def test_function_returning_a_response_still_returns_a_response(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.cache.cached(shared=True)
    def card() -> Any:
        va.calls["card"] += 1
        return jsonify(card=1)

    @va.app.get("/page")
    def page() -> Any:
        resp = card()
        assert isinstance(resp, Response)
        return resp.get_data() + resp.headers["X-Cache"].encode()

    assert va.get("/page").data == b'{"card":1}\nMISS'
    assert va.get("/page").data == b'{"card":1}\nHIT'
    assert va.calls["card"] == 1


def test_bypassed_call_returns_the_value(views_app: Any) -> None:
    """Anonymous on a per-user function, ``unless``, a key its arguments cannot build:
    the cache steps aside and the caller gets the function's own value."""
    va: ViewsApp = views_app()

    @va.cache.cached()  # per user
    def mine() -> list[str]:
        return ["mine"]

    @va.cache.cached(shared=True, unless=lambda: request.args.get("fresh") == "1")
    def listing(thing: Any = None) -> list[str]:
        return ["listing"]

    @va.app.get("/page")
    def page() -> Any:
        got = [mine(), listing(), listing(Thing(1))]
        assert got == [["mine"], ["listing"], ["listing"]], got
        return "ok"

    assert va.get("/page", user=None).status_code == 200
    assert va.get("/page?fresh=1").status_code == 200


def test_function_value_through_lock_and_stale_while_revalidate(views_app: Any) -> None:
    """The locked miss and the stale refresh paths return the value too."""
    import time

    va: ViewsApp = views_app()

    @va.cache.cached(shared=True, lock=True, timeout=1, stale_while_revalidate=30)
    def rows() -> list[int]:
        va.calls["rows"] += 1
        return [va.calls["rows"]]

    got: list[Any] = []

    @va.app.get("/page")
    def page() -> Any:
        got.append(rows())
        return "ok"

    va.get("/page")  # miss, under the lock
    va.get("/page")  # hit
    time.sleep(1.1)
    va.get("/page")  # past the soft expiry: this request refreshes
    va.get("/page")  # the refreshed value
    assert got == [[1], [1], [2], [2]]


def test_function_arguments_are_keyed_by_type(views_app: Any) -> None:
    """``f(5)`` and ``f("5")`` are two calls, and two entries (as ``@cache.memoize``
    keys them, ``argkeys.py``); containers of typed values too."""
    va: ViewsApp = views_app()

    @va.cache.cached(shared=True, query=False)
    def describe(x: Any) -> str:
        va.calls["describe"] += 1
        return f"{type(x).__name__}:{x!r}"

    values: dict[str, Any] = {
        "int": 5,
        "str": "5",
        "float": 5.0,
        "bool": True,
        "list": [1, 2],
        "strs": ["1", "2"],
        "tuple": (1, 2),
        "dict": {"a": 1},
        "dict-str": {"a": "1"},
    }

    @va.app.get("/describe")
    def page() -> Any:
        # one endpoint and no query in the function's key: only the argument differs
        value = values[request.args["as"]]
        return jsonify(positional=describe(value), keyword=describe(x=value))

    for _ in range(2):  # a miss each, then a hit each
        for name, value in values.items():
            want = f"{type(value).__name__}:{value!r}"
            got = va.get(f"/describe?as={name}").get_json()
            assert got == {"positional": want, "keyword": want}, name
    assert va.calls["describe"] == 2 * len(values)


def test_function_argument_a_key_cannot_hold_is_not_cached(views_app: Any) -> None:
    va: ViewsApp = views_app()

    @va.cache.cached(shared=True)
    def describe(x: Any) -> str:
        va.calls["describe"] += 1
        return "ok"

    @va.app.get("/describe")
    def page() -> Any:
        return describe({1, "1"})  # a set of mixed types: no key, computed every time

    assert va.get("/describe").data == b"ok"
    assert va.get("/describe").data == b"ok"
    assert va.calls["describe"] == 2
