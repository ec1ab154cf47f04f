"""What a ``@cache.cached`` view or function returns, and what of it the cache keeps.

``call.py`` runs the requests; this module owns three rules about return values (see
``docs/decorator.md``):

* **A function returns what it returns.** A cached function another view calls gets
  back its own value, hit or miss, as it does outside a request or inside a cached view.
  A ``Response`` is cached as a response (``entry``); any other value is cached only if
  the codec gives it back identical, type and value (:func:`encode_value`): a tuple (it
  would come back a list), a dict with non-string keys, an object, are returned as they
  are and not cached.
* **A route's view returns a response.** The route's own call must return what Flask's
  ``make_response`` accepts; anything else is most often an object that a decorator
  meant to serialise (``@marshal_with``) never saw, because ``@cache.cached`` sits under
  it: :func:`make_response` says so.
* **Async views run through Flask.** An ``async def`` view is run by
  ``app.ensure_sync`` (``flask[async]``: asgiref), the cache's own work staying in the
  request's thread (:func:`run_async`); :func:`is_async` refuses one at decoration time
  when asgiref is missing, instead of a 500 at its first request.

Value entries are bytes, like response entries but with their own magic:
``DRF1\\n{soft expiry}\\n`` + the codec's encoding of the value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, time
from inspect import isawaitable, iscoroutinefunction
from typing import TYPE_CHECKING, Any, NamedTuple

from ..customtypes import Codec
from ..serialization import CodecError, decode, encode

if TYPE_CHECKING:
    from flask import Flask, Response

__all__ = [
    "ValueEntry",
    "encode_value",
    "is_async",
    "make_response",
    "not_a_response",
    "pack_value",
    "run_async",
    "unpack_value",
]

_MAGIC_B = b"DRF1\n"


class ValueEntry(NamedTuple):
    """A stored function value, decoded anew on every read (each caller owns its copy)."""

    soft_expiry: float
    value: Any


def encode_value(value: Any, codec: Codec | None) -> bytes | None:
    """The codec's encoding of ``value`` (with the app's custom types, ``codec``), or
    ``None`` when decoding it would not give back the same value with the same types (then
    it must not be cached)."""
    try:
        payload = encode(value, codec=codec)
        back = decode(payload, codec=codec)
    except (TypeError, ValueError, RecursionError):  # CodecError is a ValueError
        return None
    return payload if _same(value, back) else None


def pack_value(payload: bytes, soft_expiry: float) -> bytes:
    """The stored form of a value encoded by :func:`encode_value`."""
    return _MAGIC_B + repr(soft_expiry).encode("ascii") + b"\n" + payload


def unpack_value(raw: Any, codec: Codec | None) -> ValueEntry | None:
    """A :class:`ValueEntry`, or ``None`` for anything :func:`pack_value` did not write."""
    if not isinstance(raw, bytes) or not raw.startswith(_MAGIC_B):
        return None
    end = raw.find(b"\n", len(_MAGIC_B))
    if end < 0:
        return None
    try:
        soft = float(raw[len(_MAGIC_B) : end])
        return ValueEntry(soft, decode(raw[end + 1 :], codec=codec))
    except (ValueError, CodecError):
        return None


def _same(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are equal and of the same types all the way down (``1 == 1.0``,
    ``(1,) != [1]`` but ``IntEnum.A == 1``: equality alone is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, datetime | time):
        return bool(a == b) and type(a.tzinfo) is type(b.tzinfo) and a.tzinfo == b.tzinfo
    return bool(a == b)


def make_response(app: Flask, result: Any, name: str) -> Response:
    """``app.make_response`` of a route's result; a result it refuses is most often an
    object a decorator above the cache was meant to turn into a response
    (:func:`not_a_response` says so)."""
    try:
        return app.make_response(result)
    except TypeError as exc:
        if result is None:  # Flask's own message says it all
            raise
        raise not_a_response(name, result, exc) from exc


def not_a_response(name: str, result: Any, exc: Exception) -> TypeError:
    """The error for a route's view whose result ``make_response`` refused with ``exc``."""
    kind = type(result).__name__
    if isawaitable(result):
        hint = (
            "an awaitable reached the cache: decorate the async def view itself with "
            "@cache.cached (it runs it through app.ensure_sync)"
        )
    else:
        hint = (
            "if a decorator is meant to turn what the view returns into a response "
            "(flask-apispec @marshal_with, a response schema), it sits above "
            "@cache.cached and the cache got the raw value: put @cache.cached above it, "
            "directly under @app.route and the access checks (@jwt_required(), "
            "@login_required), so the cache stores the response it makes"
        )
    return TypeError(f"cached view {name!r} returned a {kind}, not a response ({exc}); {hint}")


def run_async(
    app: Any,
    view: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    handovers: list[Callable[[], Callable[[], None]]],
) -> Any:
    """Run the ``async def`` ``view`` through ``app.ensure_sync``, as Flask runs an async
    view (asgiref runs it in a loop thread of its own); when it ends, what that thread
    holds (the tracker's open sessions, ``store.handovers``) moves to this thread, where
    the cache's bypass and fill checks run."""
    adopt: list[Callable[[], None]] = []

    async def in_loop() -> Any:
        try:
            return await view(*args, **kwargs)
        finally:
            adopt.extend(hand_over() for hand_over in handovers)

    try:
        return app.ensure_sync(in_loop)()
    finally:
        for fn in adopt:
            fn()


def is_async(view: Any) -> bool:
    """True for an ``async def`` view; a ``TypeError`` when Flask could not run it."""
    if not iscoroutinefunction(view):
        return False
    try:
        import asgiref.sync  # noqa: F401  (what Flask's async_to_sync imports)
    except ImportError:
        raise TypeError(
            f"@cache.cached on the async def view "
            f"{getattr(view, '__qualname__', view)!r}: Flask runs async views with "
            "asgiref, which is not installed: pip install 'flask[async]'"
        ) from None
    return True
