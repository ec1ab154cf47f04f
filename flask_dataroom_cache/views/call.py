"""One request through a cached view: the control flow of a call, and nothing else.

:meth:`CachedCall.run`, in order:

1. Anything but GET/HEAD runs the view (an ``async def`` one through
   ``app.ensure_sync``). So does a call made outside a request, a cached view function
   called while another cached view runs (its response is part of the outer's, which it
   may forbid storing: ``policy.nested_verdict``), and an async function another view
   calls (not cached: it returns its coroutine).
2. A request the cache must not answer runs the view, with ``X-Cache: BYPASS``: no
   identity on a per-user view (anonymous), an ``Authorization`` header on a *shared*
   view without ``ignore_authorization``, ``unless()`` true, the cache disabled or the
   store's bypass hooks (this thread holds uncommitted tracked changes), a key or tags
   that cannot be built, and a client ``Cache-Control: no-cache`` when
   ``CACHE_HONOR_NO_CACHE`` is on (that one still refills the entry). A cached function
   another view calls returns its own value, hit or miss (``returns``).
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
logged once per endpoint when the fix is in the app's code; bypasses and refusals are
sent as ``cache_bypassed``; a request being recorded (``recording``) logs each call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, Response
from werkzeug.wrappers import Response as BaseResponse

from .. import signals
from ..state import EXTENSION_KEY, CacheState
from ..store import MISSING, CacheStore
from ..tags import normalize_tags
from ..tracing import set_result
from . import context, entry, fill, flight, keying, nested, policy, recording, returns
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
        "is_async",
        "key",
        "kwargs",
        "nested_refusal",
        "opts",
        "outcome",
        "pending",
        "reason",
        "record",
        "refusal",
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
        is_async: bool = False,
    ) -> None:
        self.ext = ext
        self.opts = opts
        self.view = view
        self.args = args
        self.kwargs = kwargs
        #: ``(the decorated wrapper, its unique name)``: tells a route's own call from a
        #: cached function another view calls (keyed by the function and its arguments).
        self.func = func
        #: An ``async def`` view: the route's own call runs it through ``app.ensure_sync``;
        #: any other call returns its coroutine, not cached (``returns``).
        self.is_async = is_async
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
        #: What the call did (``HIT``, ``MISS``, ``BYPASS``; ``""``: no lookup) and why
        #: (the bypass or refusal reason, ``stale``), for the debug panel (``recording``).
        self.outcome = ""
        self.reason: str | None = None
        #: Why this call's entry was last refused (``policy``), for the compute span.
        self.refusal: str | None = None

    # -- the request ------------------------------------------------------------------------
    def run(self) -> Any:
        ctx = context.current_context()
        if ctx is None:  # called outside a request (a unit test calling the function)
            return self.view(*self.args, **self.kwargs)
        self.ctx = ctx
        req = ctx.request
        self.endpoint = req.endpoint
        if req.method != "GET" and req.method != "HEAD":
            if self.is_async and not self.called_by_another_view(ctx.app):
                return ctx.app.ensure_sync(self.view)(*self.args, **self.kwargs)
            return self.view(*self.args, **self.kwargs)
        environ = req.environ
        outer: CachedCall | None = environ.get(context.ACTIVE_KEY)
        if outer is not None:  # called by a cached view: its response is the outer's
            nested.check(self, outer)
            return self.view(*self.args, **self.kwargs)
        log_ = environ.get(recording.RECORDER_KEY)
        if log_ is not None:  # the debug panel records this request
            return recording.timed(self, log_, self.lookup)
        return self.lookup()

    def lookup(self) -> Any:
        """The call of a GET request's cached view or function: bypass, hit or miss."""
        ctx = self.ctx
        req = ctx.request
        environ = req.environ
        app = self.app = ctx.app
        state = app.extensions.get(EXTENSION_KEY)
        if state is None:
            state = self.ext.state(app)  # raises the "not initialised" error
        self.state = state
        self.views = cast("ViewState", state.views)  # set by views.install in init_app
        self.store = state.store
        opts = self.opts
        # a function another view calls (keyed by its own arguments, returns its value)
        self.routed = not self.called_by_another_view(app)
        if self.is_async and not self.routed:
            if self.views.first_warning(f"async {self.func_name()}", self.endpoint):
                log.warning(
                    "async cached function %r called by another view: not cached (only an "
                    "async view's own route call is, for now); it returns its coroutine",
                    self.func_name(),
                )
            return self.view(*self.args, **self.kwargs)

        if not opts.shared:
            self.identity = request_identity(state, self.endpoint)
            if self.identity is None:
                return self.bypass(False, policy.ANONYMOUS)  # never a shared "user"
        elif "HTTP_AUTHORIZATION" in environ and not opts.ignore_authorization:
            # a shared answer may depend on credentials
            return self.bypass(False, policy.AUTHORIZATION)

        if opts.unless is not None and opts.unless():
            return self.bypass(False, policy.UNLESS)
        store = self.store
        if not store.enabled:
            return self.bypass(False, policy.DISABLED)
        if store.bypass_checks and (why := store.bypass_reason()) is not None:
            return self.bypass(False, why)
        try:
            if self.func is not None and not self.routed:
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
            return self.bypass(False, policy.NO_KEY)
        normalize_tags(self.tag_list)  # a bad tag is a programming error: raise, not a miss
        if state.settings.honor_no_cache and policy.client_no_cache(environ):
            return self.bypass(True, policy.CLIENT_NO_CACHE)

        found = self.read()
        if found is not None:
            if opts.swr and time.time() >= found[0]:
                fresh = flight.refresh_stale(self)
                if fresh is not None:
                    return fresh
                store.metrics.incr("stale_hits", endpoint=self.endpoint)
                self.reason = "stale"
                return self.hit(found, environ, stale=True)
            return self.hit(found, environ)
        return flight.compute_once(self, environ)

    def called_by_another_view(self, app: Flask) -> bool:
        """True when this cached function is not the request's route view (another view
        calls it): the route's arguments do not identify its result, its own do."""
        return self.func is not None and keying.called_by_another_view(
            app, self.endpoint, self.ctx.request.method, self.func[0]
        )

    def func_name(self) -> str:
        return self.func[1] if self.func is not None else str(self.endpoint)

    def use_record(self) -> context.RequestRecord:
        """This request's record, kept on the call from its first miss on."""
        if self.record is None:
            self.record = context.record_of(self.ctx)
        return self.record

    def read(self) -> entry.Entry | returns.ValueEntry | None:
        """One read of the entry (a function's value entry too, for a call another view
        makes); remembers the versions a miss saw (``self.versions``)."""
        try:
            value, self.versions = self.store.read(self.key, self.tag_list, self.endpoint)
        except Exception as exc:  # never fail a request for the cache
            self.store.report_error("view read", exc)
            self.versions = None
            return None
        if value is MISSING:
            return None
        found: entry.Entry | returns.ValueEntry | None = entry.unpack(value)
        if found is None and not self.routed:  # a function's value (not a response)
            found = returns.unpack_value(value, self.store.codec)
        if found is None:  # not ours, or broken
            try:
                self.store.delete(self.key)
            except Exception as exc:
                self.store.report_error("view delete", exc)
        return found

    # -- answers ---------------------------------------------------------------------------
    def hit(
        self, found: entry.Entry | returns.ValueEntry, environ: dict[str, Any], stale: bool = False
    ) -> Any:
        self.outcome = "HIT"
        if isinstance(found, returns.ValueEntry):
            return found.value  # decoded by this read: the caller's own copy
        inm = environ.get("HTTP_IF_NONE_MATCH") if self.routed else None
        return entry.hit_response(self.app.response_class, found, inm, stale)

    def bypass(self, fill: bool, reason: str) -> Any:
        """Answer without reading the cache (``reason``: a ``policy`` bypass reason);
        ``fill``: the view's answer still refills the entry (a client ``no-cache``)."""
        self.store.metrics.incr("bypasses", endpoint=self.endpoint)
        self.outcome, self.reason = "BYPASS", reason
        if signals.cache_bypassed.receivers:
            signals.send(signals.cache_bypassed, self.app, key=self.key or None, reason=reason)
        if fill:
            return self.compute(self.ctx.request.environ, "BYPASS")
        result = self.call_view()
        if not self.routed and not isinstance(result, BaseResponse):
            return result  # a function's own value
        resp = returns.make_response(self.app, result, self.func_name())
        resp.headers["X-Cache"] = "BYPASS"
        return resp

    def call_view(self) -> Any:
        """Run the view, marked as the active cached call of this request (an async one
        through ``app.ensure_sync``, as Flask runs an uncached async view)."""
        environ = self.ctx.request.environ
        environ[context.ACTIVE_KEY] = self
        try:
            if self.is_async:
                handovers = self.store.handovers
                return returns.run_async(self.app, self.view, self.args, self.kwargs, handovers)
            return self.view(*self.args, **self.kwargs)
        finally:
            environ.pop(context.ACTIVE_KEY, None)

    def compute(self, environ: dict[str, Any], outcome: str) -> Any:
        """Capture versions, run the view, keep the response for storing if it may be;
        inside a ``dataroom_cache.compute`` span when tracing is on (``tracing.py``)."""
        self.outcome = outcome
        tracer = self.store.tracing
        if tracer is None:
            return self.compute_now(environ, outcome)
        with tracer.compute(
            self.key, tags=normalize_tags(self.tag_list), endpoint=self.endpoint, outcome=outcome
        ) as span:
            result = self.compute_now(environ, outcome)
            kept = self.pending is not None
            set_result(span, "kept" if kept else "not_stored", None if kept else self.refusal)
            return result

    def compute_now(self, environ: dict[str, Any], outcome: str) -> Any:
        """:meth:`compute`'s work."""
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
        reads_unknown: str | None = None
        if versions is not None and self.auto_dependencies():
            with self.store.capture_reads(self.key) as capture:
                result = self.call_view()
            stamped = self.store.stamp_reads(
                capture, normalize_tags(tags), versions, self.key
            )
            if stamped is None:
                versions = None
                reads_unknown = capture.unknown
            else:
                tags, versions = list(stamped[0]), stamped[1]
        else:
            result = self.call_view()
        # after_this_request functions registered by the view run on this response only,
        # never on a hit: what they add (a cookie, a header) would be lost on every hit.
        hooks_after = context.after_request_count(self.ctx)
        facts = policy.Facts(
            versions_known=versions is not None,
            view_hooks=hooks_after is not None and hooks_after > (hooks_before or 0),
            nested=self.nested_refusal,
            skipped=bool(environ.get(context.SKIP_KEY)),
            session_modified=context.session_facts(self.ctx)[0],
            reads_unknown=reads_unknown,
        )
        if not self.routed and not isinstance(result, BaseResponse):
            # a function another view calls: its own value, stored as a value
            reason = policy.verdict(policy.VIEW, self.opts, None, facts)
            if reason == policy.STORED:
                fill.keep_value(self, result, tags, versions)
            else:
                self.refused(reason)
            return result
        resp = returns.make_response(self.app, result, self.func_name())
        if resp.status_code != 200:
            self.refusal = policy.STATUS
            resp.headers["X-Cache"] = outcome
            return resp
        reason = policy.verdict(policy.VIEW, self.opts, resp, facts)
        if reason != policy.STORED:
            self.refused(reason, resp)
            if reads_unknown is not None:
                outcome = policy.not_stored_outcome(outcome, reads_unknown)
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

    def auto_dependencies(self) -> bool:
        """This entry depends on what its computation reads (automatic dependencies):
        ``CACHE_AUTO_TAGS`` on, and not declared TTL-only (``tags=[]``)."""
        return self.state.settings.auto_tags and self.opts.tags != ()

    def refused(self, reason: str, detail: Response | str | None = None) -> None:
        """Count a refusal to store, and warn if it is worth it (``detail``: the response
        refused, or the type name of a value)."""
        self.refusal = reason
        self.views.count_refusal(self.endpoint, reason)
        self.reason = reason
        if signals.cache_bypassed.receivers:
            signals.send(signals.cache_bypassed, self.app, key=self.key or None, reason=reason)
        name = self.func_name() if reason == policy.VALUE_CHANGES else self.endpoint
        self.warn(reason, name, detail)

    def warn(self, reason: str, name: str | None, detail: Response | str | None = None) -> None:
        """Log a refusal worth a warning, once per endpoint and kind (it repeats on every
        miss); ``name`` is the view the message names, ``detail`` the response refused
        (or the type name of a value)."""
        kind = policy.warning_kind(reason, name)
        if kind is not None and self.views.first_warning(kind, self.endpoint):
            headers_or_type = detail.headers if isinstance(detail, BaseResponse) else detail
            msg, args = policy.warning(reason, self.opts, name, headers_or_type)
            log.warning(msg, *args)

    def after_fill(self, release: Callable[[], None]) -> None:
        """Run ``release`` (end the single flight, free a lock) now, or after the pending
        fill is written (:class:`~.fill.PendingFill`): waiters must find the entry when
        they wake up."""
        if self.pending is None:
            release()
        else:
            self.pending.releases.append(release)
