"""The stored entry of a cached view, and the HTTP answers built from it.

Stored value: raw bytes (the codec's ``B`` flag, compressed above the threshold), never
pickle: ``DRV2`` + a few text lines (soft expiry, ETag, headers) + a blank line + the
body (:func:`pack`, :func:`unpack`). Parsed by splitting lines, cheaper than JSON on every
hit; a head already seen is not parsed again (a bounded memo by its bytes). Anything else
under the key (a foreign or broken value) is not an entry: the caller deletes it.

Stale-while-revalidate keeps the entry for ``timeout + stale_while_revalidate`` in the
backend and records the *soft* expiry (``timeout``) in the head; an invalidated tag makes
the backend refuse the entry outright (its version tokens no longer match), so a stale
entry is only ever one that *expired*, never one that was invalidated.

Also here: which of a response's headers are stored (:func:`stored_headers`), the headers
a computed response answers with (:func:`add_answer_headers`: the strong ``ETag`` of its
body, a default ``Cache-Control``), the ``If-None-Match`` comparison, and the responses a
hit answers with: the stored one (:func:`hit_response`) or a ``304``
(:func:`not_modified`). A cached function's plain value is stored in a format of its own
(``returns``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from flask import Response
from werkzeug.datastructures import Headers

from . import httpheaders
from .options import Options

__all__ = [
    "NOT_MODIFIED_HEADERS",
    "NOT_MODIFIED_MISS_HEADERS",
    "Entry",
    "add_answer_headers",
    "etag_matches",
    "etag_of",
    "hit_response",
    "not_modified",
    "pack",
    "stored_headers",
    "unpack",
]

_MAGIC = "DRV2"
_MAGIC_B = b"DRV2\n"

#: A decoded entry: ``(soft_expiry, etag, headers, body)``.
Entry = tuple[float, str, list[tuple[str, str]], bytes]

#: Never stored: recomputed, per connection, or per response.
_DROP_HEADERS = frozenset(
    {
        "content-length",
        "set-cookie",
        "date",
        "x-cache",
        "x-cache-stale",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "age",
    }
)
#: Kept on a 304 (RFC 9110 section 15.4.5).
NOT_MODIFIED_HEADERS = frozenset(
    {"etag", "cache-control", "vary", "content-location", "expires", "x-cache", "x-cache-stale"}
)
#: Kept on a 304 built on a miss from the view's own response: its cookies must reach the
#: client (such a response is never stored, so a later hit has none to drop).
NOT_MODIFIED_MISS_HEADERS = NOT_MODIFIED_HEADERS | {"set-cookie"}
_HIT = ("X-Cache", "HIT")
_STALE = ("X-Cache-Stale", "1")


# -- the stored bytes -------------------------------------------------------------------------
def pack(headers: list[tuple[str, str]], etag: str, soft_expiry: float, body: bytes) -> bytes:
    """``DRV2\\n{soft expiry}\\n{etag}\\n{Name:value\\n}...\\n{body}``. Header lines never
    contain a line break (werkzeug refuses them, and ``policy.headers_verdict`` checks
    again before a fill)."""
    lines = [_MAGIC, repr(soft_expiry), etag]
    lines.extend(f"{k}:{v}" for k, v in headers)
    return "\n".join(lines).encode("utf-8") + b"\n\n" + body


def _parse_head(head: bytes) -> tuple[float, str, tuple[tuple[str, str], ...]] | None:
    try:
        text = head.decode("utf-8")
        if "\r" in text:
            return None
        lines = text.split("\n")
        soft = float(lines[1])
        etag = lines[2]
        headers = []
        for line in lines[3:]:
            name, colon, val = line.partition(":")
            if not colon or not name:
                return None
            headers.append((name, val))
    except (IndexError, ValueError):
        return None
    if not etag:
        return None
    return soft, etag, tuple(headers)


#: Parsed entry heads by their bytes: a pure function's memo (the same bytes always parse
#: to the same value, whichever app read them), bounded, cleared when full.
_HEADS: dict[bytes, tuple[float, str, tuple[tuple[str, str], ...]]] = {}
_HEADS_MAX = 2048


def unpack(value: Any) -> Entry | None:
    """``(soft_expiry, etag, headers, body)`` or ``None`` for anything we did not write.
    ``headers`` is a new list each time (the caller appends to it)."""
    if not isinstance(value, bytes) or not value.startswith(_MAGIC_B):
        return None
    end = value.find(b"\n\n")
    if end < 0:
        return None
    head = value[:end]
    parsed = _HEADS.get(head)
    if parsed is None:
        parsed = _parse_head(head)
        if parsed is None:
            return None
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        _HEADS[head] = parsed
    return parsed[0], parsed[1], list(parsed[2]), value[end + 2 :]


def stored_headers(resp: Response) -> list[tuple[str, str]]:
    """The headers of ``resp`` an entry keeps: all but those recomputed per response or
    per connection (``Content-Length``, ``Set-Cookie``, ``Date``, hop-by-hop...)."""
    return [(k, v) for k, v in resp.headers.items() if k.lower() not in _DROP_HEADERS]


# -- ETag and If-None-Match --------------------------------------------------------------------
def etag_of(body: bytes) -> str:
    """The strong ETag of a body (BLAKE2b, 128 bits)."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(header: str, etag: str) -> bool:
    """``If-None-Match`` (its environ value: the WSGI server joined every line) matches
    ``etag``, weak comparison; parsed by :func:`.httpheaders.etag_matches`."""
    return httpheaders.etag_matches((header,), etag)


# -- answers ---------------------------------------------------------------------------------
def add_answer_headers(resp: Response, opts: Options) -> tuple[bytes, str]:
    """Complete a computed 200 (what its entry keeps, and what a hit answers with): its
    ``ETag`` (the body's, unless the view set a valid one), a ``Cache-Control`` if it has
    none (``cache_control=``, else ``no-cache``, ``private`` on a per-user view) and the
    declared ``vary`` headers. Returns the body and the ETag."""
    body = resp.get_data()
    etag = httpheaders.normalize_etag(resp.headers.get("ETag")) or etag_of(body)
    resp.headers["ETag"] = etag
    if "Cache-Control" not in resp.headers:
        resp.headers["Cache-Control"] = opts.cache_control or (
            "no-cache" if opts.shared else "private, no-cache"
        )
    for name in opts.vary:
        resp.vary.add(name)
    return body, etag


def hit_response(
    response_class: type[Response],
    entry: Entry,
    if_none_match: str | None,
    stale: bool = False,
) -> Response:
    """The answer of a hit: the stored response with ``X-Cache: HIT`` (and
    ``X-Cache-Stale: 1``), or a 304 when ``if_none_match`` (``None`` when the request's
    validators are not this entry's: a cached function another view calls) matches."""
    _soft, etag, headers, body = entry
    headers.append(_HIT)
    if stale:
        headers.append(_STALE)
    if if_none_match and etag_matches(if_none_match, etag):
        return not_modified(response_class, headers)
    return response_class(body, status=200, headers=_trusted_headers(headers))


def _trusted_headers(items: list[tuple[str, str]]) -> Headers:
    """A ``Headers`` holding ``items``, whose values were checked for line breaks when the
    entry was filled and again when its head was parsed."""
    headers = Headers()
    headers[:] = items
    return headers


def not_modified(
    response_class: type[Response],
    headers: Iterable[tuple[str, str]],
    kept: frozenset[str] = NOT_MODIFIED_HEADERS,
) -> Response:
    """A ``304`` keeping the ``kept`` headers of ``headers``, without a ``Content-Length``."""
    keep = [(k, v) for k, v in headers if k.lower() in kept]
    resp = response_class(status=304, headers=keep)
    resp.automatically_set_content_length = False
    return resp
