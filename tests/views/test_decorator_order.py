"""Decorator order with the usual Flask API decorators (issue 12 item 6b).

Small stand-ins mimic what the real ones do to a view (the libraries are not
dependencies): flask-jwt-extended's ``@jwt_required()`` checks the token before the
view, flask-apispec's ``@marshal_with`` turns the objects the view returns into a
response, webargs' ``@use_args`` parses the request and passes the result as an
argument. ``@cache.cached`` under ``@marshal_with`` receives the raw objects: it used to
fail inside views.py with "Object of type Thing is not JSON serializable"; now the
error says what to do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from flask import Response, abort, g, jsonify, request

from .conftest import ViewsApp


class Thing:
    """A model object (not a dataclass: Flask's JSON provider would serialise that)."""

    def __init__(self, id: int, name: str) -> None:
        self.id = id
        self.name = name


def marshal_with(dump: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """flask-apispec's ``@marshal_with(schema)``: the view returns objects."""

    def decorator(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            rv = fn(*args, **kwargs)
            if isinstance(rv, Response):  # a response passes through
                return rv
            return jsonify(dump(rv))

        return wrapper

    return decorator


def jwt_required() -> Callable[[Any], Any]:
    """flask-jwt-extended's ``@jwt_required()``: verifies the token first (401 without),
    then ``get_jwt_identity()`` answers."""

    def decorator(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                abort(401)
            g.jwt_identity = auth.removeprefix("Bearer ")
            return fn(*args, **kwargs)

        return wrapper

    return decorator


def use_args(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """webargs' ``@use_args(schema, location="query")``: the parsed arguments are passed
    as a positional argument, after the others."""

    def decorator(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, parse(request.args), **kwargs)

        return wrapper

    return decorator


def _dump(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_dump(o) for o in obj]
    return {"id": obj.id, "name": obj.name}


@pytest.mark.parametrize("many", [False, True], ids=["object", "list"])
def test_cache_under_a_serialising_decorator_names_the_order(views_app: Any, many: bool) -> None:
    va: ViewsApp = views_app()

    @va.app.get("/things")
    @marshal_with(_dump)
    @va.cache.cached(shared=True)  # wrong: under the decorator that makes the response
    def things() -> Any:
        return [Thing(1, "a")] if many else Thing(1, "a")

    with pytest.raises(TypeError, match=r"put @cache\.cached above") as info:
        va.get("/things")
    assert "things" in str(info.value) and "Thing" in str(info.value)


def test_right_order_with_jwt_required_use_args_and_marshal_with(views_app: Any) -> None:
    va: ViewsApp = views_app(identity=False)

    @va.cache.identity
    def jwt_identity() -> Any:
        return g.get("jwt_identity")  # get_jwt_identity()

    @va.app.get("/rooms/<int:room_id>/things")
    @jwt_required()  # access check: runs on every request, hits included
    @va.cache.cached(tags=lambda room_id: [f"room:{room_id}"])
    @use_args(lambda args: {"limit": int(args.get("limit", 2))})  # the query is in the key
    @marshal_with(_dump)  # makes the response the cache stores
    def things(args: dict[str, int], room_id: int) -> Any:
        va.calls["things"] += 1
        return [Thing(i, f"{g.jwt_identity}-{room_id}") for i in range(args["limit"])]

    alice = {"Authorization": "Bearer alice"}
    first = va.get("/rooms/1/things?limit=1", user=None, headers=alice)
    assert first.get_json() == [{"id": 0, "name": "alice-1"}]
    second = va.get("/rooms/1/things?limit=1", user=None, headers=alice)
    assert second.headers["X-Cache"] == "HIT" and second.data == first.data
    assert va.get("/rooms/1/things?limit=1", user=None).status_code == 401  # never a hit
    bob = va.get("/rooms/1/things?limit=1", user=None, headers={"Authorization": "Bearer bob"})
    assert bob.get_json() == [{"id": 0, "name": "bob-1"}]
    assert len(va.get("/rooms/1/things", user=None, headers=alice).get_json()) == 2
    assert va.calls["things"] == 3
