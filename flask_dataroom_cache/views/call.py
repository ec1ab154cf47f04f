"""One request through a cached view: the control flow of a call, and nothing else.

:meth:`CachedCall.run`, in order:

1. Anything but GET/HEAD runs the view. So does a call made outside a request, and a
   cached view function called while another cached view runs (its response is part of
   the outer's, which it may forbid storing: ``policy.nested_verdict``).
2. A request the cache must not answer runs the view, with ``X-Cache: BYPASS``: no
   identity on a per-user view (anonymous), an ``Authorization`` header on a *shared*
   view, ``unless()`` true, the cache disabled or the store's bypass hooks (this thread
   holds uncommitted tracked changes), a key or tags that cannot be built, and a client
   ``Cache-Control: no-cache`` when ``CACHE_HONOR_NO_CACHE`` is on (that one still
   refills the entry).
3. The key and tags (``keying``), then one read: a hit answers from the entry
   (``entry.hit_response``: no view call, no serialisation, one backend round trip; a
   304 when ``If-None-Match`` matches); an entry past its soft expiry is refreshed by one
   request and served stale to the others (``flight.refresh_stale``).
4. A miss is computed once (``flight.compute_once``): :meth:`CachedCall.compute` runs
   the view with the tag versions read *before* it ran, answers with an ``ETag`` and
   ``Cache-Control`` (``entry.add_answer_headers``), and asks ``policy.verdict`` whether
   the view's own response may be stored. If so, ``fill.keep`` snapshots it until the
   final response allows the write; the flight and the lock are released after it
   (:meth:`CachedCall.after_fill`).

A refusal to store is counted per endpoint and reason (``ViewState.refusals``), and
logged once per endpoint when the fix is in the app's code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, Response

from ..state import EXTENSION_KEY, CacheState
from ..store import MISSING, CacheStore
from ..tags import normalize_tags
from . import context, entry, fill, flight, keying, policy
from .fill import PendingFill
from .identity import request_identity
from .options import Options

if TYPE_CHECKING:
    from flask.ctx import RequestContext

    from ..extension import DataRoomCache
    from . import ViewState

__all__ = ["CachedCall"]

log = logging.getLogger("flask_dataroom_cache")


class CachedCall:
    """One call of a cached view function."""

    __slots__ = (
        "app",
        "args",
        "ctx",
        "endpoint",
        "ext",
        "func",
        "identity",
        "key",
        "kwargs",
        "nested_refusal",
        "opts",
        "pending",
        "record",
        "routed",
        "state",
        "store",
        "tag_list",
        "versions",
        "view",
        "views",
    )

    app: Flask
    ctx: RequestContext
    endpoint: str | None
    state: CacheState
    store: CacheStore
    views: ViewState

    def __init__(
        self,
        ext: DataRoomCache,
        opts: Options,
        view: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        func: tuple[Callable[..., Any], str] | None = None,
    ) -> None:
        self.ext = ext
        self.opts = opts
        self.view = view
        self.args = args
        self.kwargs = kwargs
        #: ``(the decorated wrapper, its unique name)``: tells a route's own call from a
        #: cached function another view calls (keyed by the function and its arguments).
        self.func = func
        #: True for the route's own view; False for a cached function another view calls
        #: (its tags come from its own arguments; conditional requests are not its).
        self.routed = True
        #: Why a nested cached call forbids storing this call's entry (``policy``).
        self.nested_refusal: str | None = None
        self.identity: str | None = None
        self.key = ""
        #: The entry's tags, built once per request (the read checks them, the fill uses them).
        self.tag_list: list[str] = []
        #: Tag versions seen by the last missing read: stamped on what the view computes.
        self.versions: tuple[str, ...] | None = None
        #: The entry waiting for the final response to be written (then the releases).
        self.pending: PendingFill | None = None
        #: This request's record (set on a miss).
        self.record: context.RequestRecord | None = None

    # -- the request ------------------------------------------------------------------------
    def run(self) -> Any:
        ctx = context.current_context()
        if ctx is None:  # called outside a request (a unit test calling the function)
            return self.view(*self.args, **self.kwargs)
        self.ctx = ctx
        req = ctx.request
        if req.method != "GET" and req.method != "HEAD":
            return self.view(*self.args, **self.kwargs)
        environ = req.environ
        outer: CachedCall | None = environ.get(context.ACTIVE_KEY)
        if outer is not None:  # called by a cached view: its response is the outer's
            self.check_nested(outer)
            return self.view(*self.args, **self.kwargs)
        app = self.app = ctx.app
        state = app.extensions.get(EXTENSION_KEY)
        if state is None:
            state = self.ext.state(app)  # raises the "not initialised" error
        self.state = state
        self.views = cast("ViewState", state.views)  # set by views.install in init_app
        self.store = state.store
        self.endpoint = req.endpoint
        opts = self.opts

        if not opts.shared:
            self.identity = request_identity(state, self.endpoint)
            if self.identity is None:
                return self.bypass(fill=False)  # anonymous: never a shared "user"
        elif "HTTP_AUTHORIZATION" in environ:
            return self.bypass(fill=False)

        if opts.unless is not None and opts.unless():
            return self.bypass(fill=False)
        store = self.store
        if not store.enabled or (store.bypass_checks and store.must_bypass()):
            return self.bypass(fill=False)
        try:
            if self.func is not None and keying.called_by_another_view(
                app, self.endpoint, req.method, self.func[0]
            ):
                self.routed = False
                self.key, self.tag_list = keying.function_entry(
                    state.settings.key_prefix,
                    self.endpoint,
                    opts,
                    req,
                    context.route_values(ctx),
                    self.identity,
                    self.func[1],
                    self.view,
                    self.args,
                    self.kwargs,
                )
            else:
                self.key = keying.route_key(
                    self.views.key_memo,
                    state.settings.key_prefix,
                    self.endpoint,
                    opts,
                    req,
                    context.route_values(ctx),
                    self.identity,
                )
                self.tag_list = keying.entry_tags(opts, self.endpoint, self.identity, req.view_args)
        except keying.Unkeyable:
            self.key = ""
            if self.views.first_warning("key", self.endpoint):
                log.warning(
                    "cannot build a cache key or tags for %r; not caching", self.func_name()
                )
            return self.bypass(fill=False)
        normalize_tags(self.tag_list)  # a bad tag is a programming error: raise, not a miss
        if state.settings.honor_no_cache and policy.client_no_cache(environ):
            return self.bypass(fill=True)

        found = self.read()
        if found is not None:
            if opts.swr and time.time() >= found[0]:
                fresh = flight.refresh_stale(self)
                if fresh is not None:
                    return fresh
                store.metrics.incr("stale_hits", endpoint=self.endpoint)
                return self.hit(found, environ, stale=True)
            return self.hit(found, environ)
        return flight.compute_once(self, environ)

    def check_nested(self, outer: CachedCall) -> None:
        """A cached view function called while ``outer`` (a cached view) runs: it runs
        directly, and its response becomes part of the outer's, whose entry is not
        stored when that would lose what this one declares (``policy.nested_verdict``)."""
        self.ctx = outer.ctx
        self.endpoint = outer.endpoint
        self.routed = False
        if not outer.key:
            return  # the outer bypassed the cache: it stores nothing anyway
        opts = self.opts

        def inner_tags() -> list[str] | None:
            try:
                return keying.entry_tags(
                    opts, self.endpoint, self.identity, None, (self.view, self.args, self.kwargs)
                )
            except Exception:
                return None

        reason = policy.nested_verdict(
            opts,
            outer.opts,
            lambda: bool(opts.unless and opts.unless()),
            inner_tags,
            outer.tag_list,
        )
        if reason != policy.STORED:
            outer.nested_refusal = reason  # refused when the outer's response is checked
            outer.warn(reason, outer.func_name())

    def func_name(self) -> str:
        return self.func[1] if self.func is not None else str(self.endpoint)

    def use_record(self) -> context.RequestRecord:
        """This request's record, kept on the call from its first miss on."""
        if self.record is None:
            self.record = context.record_of(self.ctx)
        return self.record

    def read(self) -> entry.Entry | None:
        """One read of the entry; remembers the versions a miss saw (``self.versions``)."""
        try:
            value, self.versions = self.store.read(self.key, self.tag_list, self.endpoint)
        except Exception as exc:  # never fail a request for the cache
            self.store.report_error("view read", exc)
            self.versions = None
            return None
        if value is MISSING:
            return None
        found = entry.unpack(value)
        if found is None:
            flight.delete_quietly(self.store, self.key)
        return found

    # -- answers ---------------------------------------------------------------------------
    def hit(self, found: entry.Entry, environ: dict[str, Any], stale: bool = False) -> Response:
        inm = environ.get("HTTP_IF_NONE_MATCH") if self.routed else None
        return entry.hit_response(self.app.response_class, found, inm, stale)

    def bypass(self, fill: bool) -> Any:
        self.store.metrics.incr("bypasses", endpoint=self.endpoint)
        if fill:
            return self.compute(self.ctx.request.environ, "BYPASS")
        resp = self.app.make_response(self.call_view())
        resp.headers["X-Cache"] = "BYPASS"
        return resp

    def call_view(self) -> Any:
        """Run the view, marked as the active cached call of this request."""
        environ = self.ctx.request.environ
        environ[context.ACTIVE_KEY] = self
        try:
            return self.view(*self.args, **self.kwargs)
        finally:
            environ.pop(context.ACTIVE_KEY, None)

    def compute(self, environ: dict[str, Any], outcome: str) -> Any:
        """Capture versions, run the view, keep the response for storing if it may be."""
        tags = self.tag_list
        versions = None
        if self.ctx.request.method == "GET":
            if self.versions is not None:  # seen by the read that missed, before the view ran
                versions = self.versions
            else:
                try:
                    captured = self.store.capture(tags)
                except Exception as exc:
                    self.store.report_error("view version read", exc)
                else:
                    versions = captured[1] if captured is not None else None
        hooks_before = context.after_request_count(self.ctx)
        resp = self.app.make_response(self.call_view())
        if resp.status_code != 200:
            resp.headers["X-Cache"] = outcome
            return resp
        # after_this_request functions registered by the view run on this response only,
        # never on a hit: what they add (a cookie, a header) would be lost on every hit.
        hooks_after = context.after_request_count(self.ctx)
        facts = policy.Facts(
            versions_known=versions is not None,
            view_hooks=hooks_after is not None and hooks_after > (hooks_before or 0),
            nested=self.nested_refusal,
            skipped=bool(environ.get(context.SKIP_KEY)),
            session_modified=context.session_facts(self.ctx)[0],
        )
        reason = policy.verdict(policy.VIEW, self.opts, resp, facts)
        if reason != policy.STORED:
            self.refused(reason, resp)
        if resp.is_streamed or resp.direct_passthrough:
            resp.headers["X-Cache"] = outcome
            return resp
        body, etag = entry.add_answer_headers(resp, self.opts)
        if reason == policy.STORED:
            fill.keep(self, resp, etag, body, tags, versions)
        resp.headers["X-Cache"] = outcome
        inm = environ.get("HTTP_IF_NONE_MATCH")
        if inm and self.routed and entry.etag_matches(inm, etag):
            return entry.not_modified(
                self.app.response_class, resp.headers.items(), entry.NOT_MODIFIED_MISS_HEADERS
            )
        return resp

    def refused(self, reason: str, resp: Response | None = None) -> None:
        """Count a refusal to store ``resp``, and warn if it is worth it."""
        self.views.count_refusal(self.endpoint, reason)
        self.warn(reason, self.endpoint, resp)

    def warn(self, reason: str, name: str | None, resp: Response | None = None) -> None:
        """Log a refusal worth a warning, once per endpoint and kind (it repeats on every
        miss); ``name`` is the view the message names."""
        kind = policy.warning_kind(reason)
        if kind is not None and self.views.first_warning(kind, self.endpoint):
            msg, args = policy.warning(
                reason, self.opts, name, resp.headers if resp is not None else None
            )
            log.warning(msg, *args)

    def after_fill(self, release: Callable[[], None]) -> None:
        """Run ``release`` (end the single flight, free a lock) now, or after the pending
        fill is written (:class:`~.fill.PendingFill`): waiters must find the entry when
        they wake up."""
        if self.pending is None:
            release()
        else:
            self.pending.releases.append(release)
