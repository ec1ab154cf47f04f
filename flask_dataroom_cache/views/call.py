"""One request through a cached view: the control flow of a call, and nothing else.

:meth:`CachedCall.run`, in order:

1. Anything but GET/HEAD runs the view (an ``async def`` one through
   ``app.ensure_sync``). So does a call made outside a request, a cached view function
   called while another cached view runs (its response is part of the outer's, which it
   may forbid storing: ``policy.nested_verdict``), and an async function another view
   calls (not cached: it returns its coroutine).
2. A request the cache must not answer runs the view, with ``X-Cache: BYPASS``
   (``bypass.decide``: no identity on a per-user view, ``Authorization`` on a shared
   one, ``unless()``, the cache disabled or the store's bypass hooks, a key or tags that
   cannot be built, a client ``no-cache`` that still refills). A cached function another
   view calls returns its own value, hit or miss (``returns``).
3. The key and tags (``bypass.decide``, built by ``keying``), then one read: a hit
   answers from the entry (``entry.hit_response``: no view call, no serialisation, one
   backend round trip; a 304 when ``If-None-Match`` matches); an entry past its soft
   expiry is refreshed by one request and served stale to the others
   (``flight.refresh_stale``).
4. A miss is computed once (``flight.compute_once``): :meth:`CachedCall.compute`
   (``compute``) runs the view with the tag versions read *before* it ran, its reads
   captured for automatic dependencies, and keeps the response for storing when
   ``policy.verdict`` allows it (``fill.keep``); the flight and the lock are released
   after the write (:meth:`CachedCall.after_fill`).

What a call did and why (``outcome``, ``reason``) is what a recorded request logs
(``recording``, the debug panel); bypasses and refusals are also counted, sent as
``cache_bypassed`` and, when the fix is in the app's code, logged once (``outcome``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from flask import Flask
from werkzeug.wrappers import Response as BaseResponse

from ..state import EXTENSION_KEY, CacheState
from ..store import MISSING, CacheStore
from . import bypass, compute, context, entry, flight, keying, nested, outcome, recording, returns
from .fill import PendingFill
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
        app = self.app = ctx.app
        state = app.extensions.get(EXTENSION_KEY)
        if state is None:
            state = self.ext.state(app)  # raises the "not initialised" error
        self.state = state
        self.views = cast("ViewState", state.views)  # set by views.install in init_app
        self.store = state.store
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

        why = bypass.decide(self)
        if why is not None:
            return self.bypass(*why)

        environ = ctx.request.environ
        found = self.read()
        if found is not None:
            if self.opts.swr and time.time() >= found[0]:
                fresh = flight.refresh_stale(self)
                if fresh is not None:
                    return fresh
                self.store.metrics.incr("stale_hits", endpoint=self.endpoint)
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

    def bypass(self, refill: bool, reason: str) -> Any:
        """Answer without reading the cache (``reason``: a ``policy`` bypass reason);
        ``refill``: the view's answer still refills the entry (a client ``no-cache``)."""
        outcome.bypassed(self, reason)
        if refill:
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

    def compute(self, environ: dict[str, Any], x_cache: str) -> Any:
        """A miss (or a client ``no-cache``, ``x_cache`` ``BYPASS``) computed: the view run
        with the versions read before it, its answer kept for storing if it may be
        (``compute``)."""
        return compute.compute(self, environ, x_cache)

    def after_fill(self, release: Callable[[], None]) -> None:
        """Run ``release`` (end the single flight, free a lock) now, or after the pending
        fill is written (:class:`~.fill.PendingFill`): waiters must find the entry when
        they wake up."""
        if self.pending is None:
            release()
        else:
            self.pending.releases.append(release)
