"""What the decorator keeps on one request, and the hooks that end it.

Per request context (Flask's ``RequestContext``), one typed :class:`RequestRecord`: the URL
values the route matched (before a URL value preprocessor pops ``<tenant>`` or ``<lang>``
into ``g``: what a key is built from), the keys whose single flight the request leads,
and the calls whose response passed the view-level checks and waits for the final
response to be stored. It lives on the context object, not in the WSGI environ: a context
copied by ``copy_current_request_context`` shares the environ, and its teardown must not
finish this request's fills.

In the WSGI environ, two marks: ``cache.skip()`` (do not store this request's response)
and the cached call running now (a cached view function it calls runs directly, as part
of its response).

The hooks, attached by ``views.install`` and detached by ``views.uninstall``:
:func:`snapshot_view_args` (the first URL value preprocessor), :func:`request_finished`
(after every after-request function and the session save: stores the pending fills the
final response allows) and :func:`end_request` (teardown: drops a fill that never saw the
final response and releases what it held).

The only module that reads Flask's request context internals: the session as it stands
(``_session``: the public ``session`` would open it and mark it accessed) and the
after-request functions registered so far (``_after_request_functions``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response
from flask.globals import request_ctx

if TYPE_CHECKING:
    from flask.ctx import RequestContext
    from flask.sessions import SessionMixin

    from .fill import PendingFill

__all__ = [
    "ACTIVE_KEY",
    "SKIP_KEY",
    "RequestRecord",
    "after_request_count",
    "current_context",
    "current_record",
    "end_request",
    "record_of",
    "request_finished",
    "route_values",
    "session_facts",
    "snapshot_view_args",
]

#: In the WSGI environ: ``cache.skip()`` was called (``g`` may outlive one request when an
#: app context is already pushed, e.g. in tests).
SKIP_KEY = "dataroom_cache.skip"
#: In the WSGI environ while a cached view runs: the :class:`~.call.CachedCall`. A cached
#: view function it calls (an alias route returning ``other_view()``) runs directly,
#: without a caching layer of its own (it would key itself by the outer endpoint and wait
#: on the outer's single flight).
ACTIVE_KEY = "dataroom_cache.active"
#: The attribute of a ``RequestContext`` holding its :class:`RequestRecord`.
_RECORD_ATTR = "_dataroom_cache_record"


class RequestRecord:
    """What the decorator keeps on one request context."""

    __slots__ = ("finished", "leading", "pending", "route_values")

    def __init__(self, route_values: dict[str, Any] | None = None) -> None:
        #: The URL values the route matched (``None``: none, or not seen).
        self.route_values = route_values
        #: ``request_finished`` fired: a cached call made now (a ``stream_with_context``
        #: generator) fills at once, on the view-level checks.
        self.finished = False
        #: Keys whose single flight this request leads (until its final response).
        self.leading: set[str] = set()
        #: Entries waiting for the final response to be written, by key (a second call
        #: of a key in one request keeps the first).
        self.pending: dict[str, PendingFill] = {}

    def finish(self, final: Response | None) -> None:
        """Write every pending entry ``final`` allows (``None``: not known, write none)
        and release what each held; every one is finished even if one raises."""
        fills = list(self.pending.values())
        self.pending.clear()
        error: BaseException | None = None
        for pending in fills:
            try:
                pending.finish(final)
            except BaseException as exc:  # finish the others, then raise the first
                if error is None:
                    error = exc
        if error is not None:
            raise error


#: The object behind Flask's ``request_ctx`` proxy (werkzeug's documented
#: ``LocalProxy._get_current_object``); raises ``RuntimeError`` outside a request.
_request_context: Callable[[], RequestContext] = request_ctx._get_current_object  # type: ignore[attr-defined]


def current_context() -> RequestContext | None:
    """The request context being handled, or ``None`` outside a request."""
    try:
        return _request_context()
    except RuntimeError:  # outside a request (has_request_context() is False)
        return None


def record_of(ctx: RequestContext) -> RequestRecord:
    """The :class:`RequestRecord` of ``ctx``, created on first use."""
    record: RequestRecord | None = getattr(ctx, _RECORD_ATTR, None)
    if record is None:
        record = RequestRecord()
        setattr(ctx, _RECORD_ATTR, record)
    return record


def current_record(ctx: RequestContext) -> RequestRecord | None:
    """The :class:`RequestRecord` of ``ctx`` if it has one (never creates it)."""
    record: RequestRecord | None = getattr(ctx, _RECORD_ATTR, None)
    return record


def route_values(ctx: RequestContext) -> dict[str, Any]:
    """The URL values the route matched (what a key is built from), even if a URL value
    preprocessor has since removed some from ``request.view_args``."""
    record: RequestRecord | None = getattr(ctx, _RECORD_ATTR, None)
    if record is not None and record.route_values is not None:
        return record.route_values
    return ctx.request.view_args or {}


def session_facts(ctx: RequestContext) -> tuple[bool, bool]:
    """``(modified, accessed)`` of the request's session as it stands, read without
    opening it or marking it accessed (the null session, without a secret key, is never
    accessed: it holds nothing)."""
    session: SessionMixin | None = getattr(ctx, "_session", None)
    if session is None:
        return False, False
    modified = bool(getattr(session, "modified", False))
    accessed = bool(getattr(session, "accessed", False)) and not (
        ctx.app.session_interface.is_null_session(session)
    )
    return modified, accessed


def after_request_count(ctx: RequestContext) -> int | None:
    """How many ``after_this_request`` functions are registered (``None``: unknown)."""
    hooks = getattr(ctx, "_after_request_functions", None)
    return len(hooks) if hooks is not None else None


# -- the hooks --------------------------------------------------------------------------------
def snapshot_view_args(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """URL value preprocessor, the first of all: the route's values as matched."""
    if not values:
        return
    ctx = current_context()
    if ctx is not None:
        record: RequestRecord | None = getattr(ctx, _RECORD_ATTR, None)
        if record is None:
            setattr(ctx, _RECORD_ATTR, RequestRecord(dict(values)))
        else:
            record.route_values = dict(values)


def request_finished(sender: Flask, response: Response | None = None, **_: Any) -> None:
    """``request_finished``: after every after-request function and the session save, so
    ``response`` is what the client gets. Stores the pending fills of this request, if
    any (misses), when the final response still allows it, and marks the request
    finished (a cached call made later cannot wait for a response already sent)."""
    ctx = current_context()
    if ctx is not None:
        record = record_of(ctx)
        record.finished = True
        if record.pending:
            record.finish(response)


def end_request(_exc: BaseException | None = None) -> None:
    """Teardown: a pending fill that never saw the final response (the request failed
    after the view, or the view was called without Flask's dispatch) is dropped, and the
    single flight and lock it held are released. Only the fills of the context being
    torn down: a copy of it popped in another thread has none."""
    ctx = current_context()
    if ctx is not None:
        record: RequestRecord | None = getattr(ctx, _RECORD_ATTR, None)
        if record is not None and record.pending:
            record.finish(None)
