"""``assert_hit`` / ``assert_miss`` / ``assert_bypass``: what the ``X-Cache`` header of a
cached view's response says, with a failure message that shows the header and what it
means.

A ``@cache.cached`` view answers with ``X-Cache: HIT`` (served from an entry; with
``X-Cache-Stale: 1`` when past its soft expiry), ``MISS`` (the view ran; its response may
be stored) or ``BYPASS`` (the cache was not used at all). A response without the header
did not go through a cached view.
"""

from __future__ import annotations

from typing import Any

__all__ = ["assert_bypass", "assert_hit", "assert_miss", "describe_response", "x_cache"]

_MEANING = {
    "HIT": "served from a cached entry",
    "MISS": (
        "computed by the view: no valid entry (first read, a tag it carries was invalidated, "
        "or it expired)"
    ),
    "BYPASS": (
        "the cache was not used: an anonymous request on a per-user view, an Authorization "
        "header on a shared view, unless(), the cache disabled (cache.disabled() or "
        "CACHE_ENABLED=false), this thread's uncommitted tracked changes, a client "
        "no-cache (CACHE_HONOR_NO_CACHE), or a key that could not be built"
    ),
    None: (
        "no X-Cache header: the route is not decorated with @cache.cached, the method is "
        "not GET/HEAD, or the response did not come from the view"
    ),
}


def x_cache(response: Any) -> str | None:
    """The ``X-Cache`` header of ``response`` (``"HIT"``, ``"MISS"``, ``"BYPASS"``), or None."""
    headers = getattr(response, "headers", None)
    if headers is None:
        raise TypeError(f"expected a response with headers, got {type(response).__name__}")
    value = headers.get("X-Cache")
    return None if value is None else str(value)


def describe_response(response: Any, limit: int = 200) -> str:
    """``GET /path -> 200, X-Cache: HIT, body b'...'`` (the request when the test client
    kept it; the body cut at ``limit`` bytes)."""
    parts = []
    request = getattr(response, "request", None)
    if request is not None and getattr(request, "method", None):
        parts.append(f"{request.method} {request.full_path.rstrip('?')} -> ")
    parts.append(str(getattr(response, "status", "?")))
    header = response.headers.get("X-Cache")
    parts.append(f", X-Cache: {header if header is not None else '(none)'}")
    if response.headers.get("X-Cache-Stale"):
        parts.append(" (stale)")
    if not getattr(response, "direct_passthrough", False):  # a file wrapper: left unread
        body = response.get_data()
        shown = body[:limit] + (b"..." if len(body) > limit else b"")
        parts.append(f", body {shown!r}")
    return "".join(parts)


def _expect(response: Any, wanted: str) -> None:
    __tracebackhide__ = True
    got = x_cache(response)
    if got == wanted:
        return
    raise AssertionError(
        f"expected X-Cache: {wanted}, got {got if got is not None else '(no header)'}: "
        f"{_MEANING.get(got, 'an unknown value')}\n  {describe_response(response)}"
    )


def assert_hit(response: Any) -> None:
    """The response was served from the cache (``X-Cache: HIT``)."""
    __tracebackhide__ = True
    _expect(response, "HIT")


def assert_miss(response: Any) -> None:
    """The view ran because no valid entry existed (``X-Cache: MISS``)."""
    __tracebackhide__ = True
    _expect(response, "MISS")


def assert_bypass(response: Any) -> None:
    """The cache was not used for this request (``X-Cache: BYPASS``)."""
    __tracebackhide__ = True
    _expect(response, "BYPASS")
