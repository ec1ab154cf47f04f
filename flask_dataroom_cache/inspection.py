"""One cache entry, looked at: what it holds and whether a read would serve it now.

``cache.inspect(key)`` / ``cache.inspect(view=URL, user=ID)`` and ``flask dataroom-cache
inspect`` return an :class:`EntryReport`: the entry's key, the size of its stored payload,
its TTL, each tag it carries with the version token captured in the entry and the tag's
token now (so the report names *which* tag made it stale), what it is (a view's response:
status, headers, ETag and soft expiry; a cached function's value; a plain value) and its
state (:data:`STATES`).

Read-only: the backend's :meth:`~.backends.base.Backend.inspect` creates no token (a
missing one is reported as missing: a read would recreate it, so the entry is stale),
drops nothing, moves nothing in an LRU. With the memory backend the report is of this
process's own cache (in-process only: the CLI's process has its own, empty one).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from flask import current_app

from .backends.base import RawEntry
from .serialization import CodecError, decode
from .state import state_of
from .views import entry as view_entry
from .views import returns
from .views.locate import NotACachedView, ViewTarget, locate

if TYPE_CHECKING:
    from flask import Flask

    from .state import CacheState

__all__ = [
    "FOREIGN",
    "MISSING",
    "SOFT_EXPIRED",
    "STALE_BY_TAG",
    "STATES",
    "VALID",
    "EntryReport",
    "NotACachedView",
    "TagReport",
    "inspect_entry",
    "inspect_key",
    "inspect_view",
    "parse_headers",
    "render",
]

#: A read now is a hit.
VALID = "valid"
#: A read now misses: a tag's token changed (or is missing) since the value was computed.
STALE_BY_TAG = "stale-by-tag"
#: Past its soft expiry (stale-while-revalidate): served stale while one request refreshes.
SOFT_EXPIRED = "soft-expired"
#: No entry under the key (never stored, expired, evicted, deleted).
MISSING = "missing"
#: Something under the key this cache did not write, or cannot decode: a read drops it.
FOREIGN = "foreign"
#: Every state, and whether a read now is served from the entry.
STATES = {VALID: True, STALE_BY_TAG: False, SOFT_EXPIRED: True, MISSING: False, FOREIGN: False}

_MEMORY_NOTE = (
    "memory backend: in-process only, this is the cache of the process asking (the CLI's "
    "own process has an empty one); inspect from the serving process, e.g. cache.inspect(key)"
)


@dataclass(frozen=True)
class TagReport:
    """One tag of an entry: the token the entry captured, and the tag's token now."""

    tag: str
    captured: str
    #: ``None``: the tag has no token (expired or evicted): a read would create a new
    #: one, so the entry is stale.
    current: str | None

    @property
    def status(self) -> str:
        """``current`` (the entry is valid for this tag), ``changed`` or ``missing``."""
        if self.current is None:
            return "missing"
        return "current" if self.current == self.captured else "changed"


@dataclass(frozen=True)
class EntryReport:
    """What :func:`inspect_key` found under one key (see the module docstring)."""

    key: str
    #: The backend asked (``memory``, ``redis``, ``redis-cluster``).
    backend: str
    #: One of :data:`STATES`.
    state: str
    #: Bytes of the stored payload (the encoded value, compressed if it was); ``None``
    #: when missing.
    size_bytes: int | None = None
    #: Seconds until the backend drops it; ``None``: missing, no expiry or unknown.
    ttl_seconds: float | None = None
    tags: tuple[TagReport, ...] = ()
    #: ``view`` (a cached view's response), ``function`` (a cached function's value),
    #: ``value`` (``cache_set``/``get_or_set``), or ``None`` (missing, foreign).
    kind: str | None = None
    #: The type of a ``value``/``function`` entry's value.
    value_type: str | None = None
    #: A view entry's stored status (only complete 200s are stored) and headers.
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    etag: str | None = None
    body_bytes: int | None = None
    #: When a view/function entry becomes stale-while-revalidate (Unix time), if it
    #: records one; the entry is kept ``stale_while_revalidate`` seconds longer.
    soft_expiry: float | None = None
    #: The URL, endpoint and identity it was derived from (``view=``).
    url: str | None = None
    endpoint: str | None = None
    identity: str | None = None
    #: The tags a fill of that view would stamp now (``view=``; compare with ``tags``).
    expected_tags: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        """True when something is stored under the key."""
        return self.state != MISSING

    @property
    def served(self) -> bool:
        """True when a read now would be answered from this entry."""
        return STATES[self.state]

    @property
    def stale_tags(self) -> tuple[str, ...]:
        """The tags whose token is no longer the captured one (why it is stale)."""
        return tuple(t.tag for t in self.tags if t.status != "current")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (``--json``)."""
        soft_in = None if self.soft_expiry is None else round(self.soft_expiry - time.time(), 3)
        return {
            "key": self.key,
            "found": self.found,
            "state": self.state,
            "served": self.served,
            "backend": self.backend,
            "size_bytes": self.size_bytes,
            "ttl_seconds": _finite(self.ttl_seconds),
            "tags": [
                {"tag": t.tag, "captured": t.captured, "current": t.current, "status": t.status}
                for t in self.tags
            ],
            "stale_tags": list(self.stale_tags),
            "kind": self.kind,
            "value_type": self.value_type,
            "status": self.status,
            "headers": [list(h) for h in self.headers],
            "etag": self.etag,
            "body_bytes": self.body_bytes,
            "soft_expiry": self.soft_expiry,
            "soft_expires_in": soft_in,
            "url": self.url,
            "endpoint": self.endpoint,
            "identity": self.identity,
            "expected_tags": None if self.expected_tags is None else list(self.expected_tags),
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _finite(seconds: float | None) -> float | None:
    if seconds is None or math.isinf(seconds):
        return None
    return round(seconds, 3)


# -- building a report --------------------------------------------------------------------
def inspect_entry(
    app: Flask | None,
    key: str | None = None,
    *,
    view: str | None = None,
    user: Any = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    direct: bool = False,
) -> EntryReport:
    """``cache.inspect``: the report of ``key``, or of the entry a GET of ``view`` reads,
    on ``app`` (default: the current app). ``ValueError`` unless exactly one of them is
    given (``user``/``headers`` only with ``view``); see :func:`inspect_key` and
    :func:`inspect_view`."""
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = state_of(app)
    if (key is None) == (view is None):
        raise ValueError("inspect needs a key or view=URL (not both)")
    if view is None:
        if user is not None or headers:
            raise ValueError("user and headers go with view=URL (a key already holds them)")
        assert key is not None
        return inspect_key(state, key, direct=direct)
    return inspect_view(app, state, view, user=user, headers=headers, direct=direct)


def inspect_key(state: CacheState, key: str, *, direct: bool = False) -> EntryReport:
    """The report of ``key`` on ``state``'s backend (``direct``: the backend behind the
    breaker, as the CLI uses it). Raises ``BackendError`` if the backend does not answer."""
    backend = state.store.backend
    if direct:
        backend = getattr(backend, "primary", backend)
    raw = backend.inspect(key)
    notes = (_MEMORY_NOTE,) if backend.name == "memory" else ()
    if raw is None:
        return EntryReport(key, backend.name, MISSING, notes=notes)
    return _report(state, key, backend.name, raw, notes)


def _report(
    state: CacheState, key: str, backend: str, raw: RawEntry, notes: tuple[str, ...]
) -> EntryReport:
    base: dict[str, Any] = {
        "key": key,
        "backend": backend,
        "size_bytes": len(raw.payload),
        "ttl_seconds": raw.ttl,
        "notes": notes,
    }
    if not raw.framed:
        return EntryReport(state=FOREIGN, **base)
    tags = tuple(
        TagReport(t, v, c) for t, v, c in zip(raw.tags, raw.versions, raw.current, strict=True)
    )
    base["tags"] = tags
    stale = any(t.status != "current" for t in tags)
    try:
        value = decode(raw.payload, codec=state.store.codec)
    except CodecError as exc:
        note = f"the payload does not decode ({exc}): a read drops it"
        return EntryReport(state=FOREIGN, **{**base, "notes": (*notes, note)})
    described = _describe(value, state)
    soft = described.get("soft_expiry")
    if stale:
        verdict = STALE_BY_TAG
    elif soft is not None and time.time() >= soft:
        verdict = SOFT_EXPIRED
    else:
        verdict = VALID
    return EntryReport(state=verdict, **base, **described)


def _describe(value: Any, state: CacheState) -> dict[str, Any]:
    """What a decoded payload is: a view's response, a function's value, a plain value."""
    found = view_entry.unpack(value)
    if found is not None:
        soft, etag, headers, body = found
        return {
            "kind": "view",
            "status": 200,  # only complete 200 responses are stored (views/policy.py)
            "headers": tuple(headers),
            "etag": etag,
            "body_bytes": len(body),
            "soft_expiry": soft,
        }
    function_value = returns.unpack_value(value, state.store.codec)
    if function_value is not None:
        return {
            "kind": "function",
            "value_type": type(function_value.value).__name__,
            "soft_expiry": function_value.soft_expiry,
        }
    return {"kind": "value", "value_type": type(value).__name__}


def inspect_view(
    app: Flask,
    state: CacheState,
    url: str,
    *,
    user: Any = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    direct: bool = False,
) -> EntryReport:
    """The report of the entry a GET of ``url`` reads (key derived as the decorator
    would: :func:`.views.locate.locate`), for ``user`` on a per-user view. Raises
    :class:`NotACachedView` when ``url`` matches no cached view."""
    target: ViewTarget = locate(app, state, url, user=user, headers=headers)
    report = inspect_key(state, target.key, direct=direct)
    notes = report.notes
    if user is not None and target.shared:
        notes = (*notes, f"endpoint {target.endpoint!r} is shared: the user is not in its key")
    return _with_target(report, target, notes)


def _with_target(report: EntryReport, target: ViewTarget, notes: tuple[str, ...]) -> EntryReport:
    return replace(
        report,
        url=target.url,
        endpoint=target.endpoint,
        identity=target.identity,
        expected_tags=target.tags,
        notes=notes,
    )


def parse_headers(lines: Iterable[str]) -> list[tuple[str, str]]:
    """``NAME: VALUE`` lines (the CLI's ``--header``) as pairs; ``ValueError`` otherwise."""
    pairs = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--header {line!r} is not 'NAME: VALUE'")
        pairs.append((name.strip(), value.strip()))
    return pairs


# -- text ---------------------------------------------------------------------------------
_VERDICTS = {
    VALID: "valid: a read now is a hit",
    STALE_BY_TAG: "stale-by-tag: a read now misses ({which})",
    SOFT_EXPIRED: "soft-expired: served stale (X-Cache-Stale: 1) while one request refreshes it",
    MISSING: "missing: nothing stored under this key (never stored, expired, evicted or deleted)",
    FOREIGN: "foreign: not an entry this cache wrote or can decode; a read drops it",
}


def render(report: EntryReport) -> str:
    """The human-readable report (``flask dataroom-cache inspect`` without ``--json``)."""
    lines: list[str] = []

    def row(name: str, text: str) -> None:
        lines.append(f"{name:<12}{text}")

    if report.url is not None:
        who = f", user {report.identity}" if report.identity is not None else ", shared"
        row("url", f"{report.url} (endpoint {report.endpoint}{who})")
    row("key", report.key)
    which = ", ".join(
        f"tag {t.tag} {'changed' if t.status == 'changed' else 'has no token'}"
        for t in report.tags
        if t.status != "current"
    )
    row("state", _VERDICTS[report.state].format(which=which))
    row("backend", report.backend)
    if report.found:
        row("size", f"{report.size_bytes} B (stored payload)")
        row("ttl", _seconds(report.ttl_seconds))
    if report.kind == "view":
        row("kind", f"view response, status {report.status}, {report.body_bytes} B body")
        row("etag", str(report.etag))
        for i, (name, val) in enumerate(report.headers):
            row("headers" if i == 0 else "", f"{name}: {val}")
    elif report.kind is not None:
        row("kind", f"{report.kind} ({report.value_type})")
    if report.soft_expiry is not None:
        left = report.soft_expiry - time.time()
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.soft_expiry))
        rel = f"in {left:.1f} s" if left >= 0 else f"{-left:.1f} s ago"
        row("soft expiry", f"{when} ({rel})")
    if report.tags:
        row("tags", f"{len(report.tags)}")
        width = max(len(t.tag) for t in report.tags)
        for t in report.tags:
            if t.status == "current":
                detail = f"current    {t.captured}"
            elif t.status == "changed":
                detail = f"CHANGED    captured {t.captured}, now {t.current}"
            else:
                detail = (
                    f"MISSING    captured {t.captured}; missing "
                    "(would be recreated: the entry is stale)"
                )
            lines.append(f"  {t.tag:<{width}}  {detail}")
    if report.expected_tags is not None and report.found and report.state != FOREIGN:
        carried = {t.tag for t in report.tags}
        if carried != set(report.expected_tags):
            row("note", f"the view would now stamp tags {', '.join(report.expected_tags)}")
    for note in report.notes:
        row("note", note)
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    if value is None:
        return "unknown"
    if math.isinf(value):
        return "no expiry"
    return f"{value:.1f} s left"
