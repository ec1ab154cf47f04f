"""HTTP header parsing of the cached views: ``If-None-Match``, ``ETag``, ``Cache-Control``.

This module owns how those headers are read. Everything goes through werkzeug's parsers
(``parse_etags``, ``parse_cache_control_header``, ``quote_etag``/``unquote_etag``): a
quoted ETag or directive value may contain commas, so splitting on commas by hand is
wrong. Every header *line* is read (werkzeug's ``Headers.get`` and the response's
``cache_control`` property read only the first one): each line of
``headers.getlist(name)`` is parsed on its own. On the request side a WSGI server has
already joined repeated lines into one environ value (``a, b``), which parses the same.
"""

from __future__ import annotations

from collections.abc import Iterable

from werkzeug.datastructures import ResponseCacheControl
from werkzeug.http import parse_cache_control_header, parse_etags, quote_etag, unquote_etag

__all__ = ["cache_control_directives", "etag_matches", "normalize_etag"]


def etag_matches(lines: Iterable[str], etag: str) -> bool:
    """Whether any ``If-None-Match`` line matches ``etag`` (a quoted, possibly weak ETag),
    with the weak comparison RFC 9110 asks for on this header; ``*`` matches anything."""
    value, _weak = unquote_etag(etag)
    if value is None:
        return False
    for line in lines:
        line = line.strip()
        if line and parse_etags(line).contains_weak(value):
            return True
    return False


def normalize_etag(raw: str | None) -> str | None:
    """A view's ``ETag`` header as a valid quoted ETag (``v1`` becomes ``"v1"``, ``W/``
    kept), or ``None`` when it cannot be one (empty, or a quote inside the value)."""
    value, weak = unquote_etag(raw.strip() if raw else None)
    if not value:
        return None
    try:
        return quote_etag(value, bool(weak))
    except ValueError:
        return None


def cache_control_directives(lines: Iterable[str]) -> set[str]:
    """The directive names (lower case) of every ``Cache-Control`` line; a quoted value
    (``no-cache="Set-Cookie, X"``) is one value, whatever commas it holds."""
    names: set[str] = set()
    for line in lines:
        if line:
            names.update(
                k.lower() for k in parse_cache_control_header(line, cls=ResponseCacheControl)
            )
    return names
