"""A miss computed: the view run, its answer checked, and kept for storing if it may be.

:func:`compute`, for a miss (and a client ``no-cache`` that refills):

1. The tag versions the entry will be stamped with are those read *before* the view
   ran: the missing read's (``call.versions``), else one capture (:func:`versions_before`);
   ``None`` (a backend error, a HEAD) forbids storing.
2. The view runs (:meth:`CachedCall.call_view`). With automatic dependencies
   (``CACHE_AUTO_TAGS``, not ``tags=[]``) what it reads is captured
   (``store.capture_reads``) and stamped on the entry (``store.stamp_reads``): unknown
   reads forbid storing (``X-Cache: MISS (reads unknown)``).
3. ``policy.verdict`` at ``VIEW`` decides from the response and the facts of the call
   (its ``after_this_request`` functions, a nested call's refusal, ``skip()``, the session).
   A response gets its ``ETag`` and ``Cache-Control`` (``entry.add_answer_headers``) and
   ``X-Cache``; a stored one is kept by ``fill.keep`` (a function's value by
   ``fill.keep_value``) until the final response is known; a refusal is counted and
   warned (``outcome.refused``). A matching ``If-None-Match`` answers 304.

With tracing on, all of it runs inside a ``dataroom_cache.compute`` span (``tracing.py``)
that ends with ``kept`` or ``not_stored`` and the refusal reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response as BaseResponse

from ..tags import normalize_tags
from ..tracing import set_result
from . import context, entry, fill, outcome, policy, returns

if TYPE_CHECKING:
    from .call import CachedCall

__all__ = ["auto_dependencies", "compute", "versions_before"]


def compute(call: CachedCall, environ: dict[str, Any], x_cache: str) -> Any:
    """Capture versions, run the view, keep the response for storing if it may be;
    inside a ``dataroom_cache.compute`` span when tracing is on. ``x_cache``: ``MISS``,
    or ``BYPASS`` for a client ``no-cache`` (the call's outcome and ``X-Cache``)."""
    call.outcome = x_cache
    tracer = call.store.tracing
    if tracer is None:
        return _compute(call, environ, x_cache)
    with tracer.compute(
        call.key, tags=normalize_tags(call.tag_list), endpoint=call.endpoint, outcome=x_cache
    ) as span:
        result = _compute(call, environ, x_cache)
        kept = call.pending is not None
        set_result(span, "kept" if kept else "not_stored", None if kept else call.refusal)
        return result


def versions_before(call: CachedCall) -> tuple[str, ...] | None:
    """The tag versions to stamp on what the view computes, read before it runs: the
    missing read's, else one capture; ``None`` (not a GET, a backend error): not stored."""
    if call.ctx.request.method != "GET":
        return None
    if call.versions is not None:  # seen by the read that missed, before the view ran
        return call.versions
    try:
        captured = call.store.capture(call.tag_list)
    except Exception as exc:
        call.store.report_error("view version read", exc)
        return None
    return captured[1] if captured is not None else None


def auto_dependencies(call: CachedCall) -> bool:
    """This entry depends on what its computation reads (automatic dependencies):
    ``CACHE_AUTO_TAGS`` on, and not declared TTL-only (``tags=[]``)."""
    return call.state.settings.auto_tags and call.opts.tags != ()


def _compute(call: CachedCall, environ: dict[str, Any], x_cache: str) -> Any:
    """:func:`compute`'s work."""
    tags = call.tag_list
    versions = versions_before(call)
    hooks_before = context.after_request_count(call.ctx)
    reads_unknown: str | None = None
    if versions is not None and auto_dependencies(call):
        with call.store.capture_reads(call.key) as capture:
            result = call.call_view()
        stamped = call.store.stamp_reads(capture, normalize_tags(tags), versions, call.key)
        if stamped is None:
            versions = None
            reads_unknown = capture.unknown
        else:
            tags, versions = list(stamped[0]), stamped[1]
    else:
        result = call.call_view()
    # after_this_request functions registered by the view run on this response only,
    # never on a hit: what they add (a cookie, a header) would be lost on every hit.
    hooks_after = context.after_request_count(call.ctx)
    facts = policy.Facts(
        versions_known=versions is not None,
        view_hooks=hooks_after is not None and hooks_after > (hooks_before or 0),
        nested=call.nested_refusal,
        skipped=bool(environ.get(context.SKIP_KEY)),
        session_modified=context.session_facts(call.ctx)[0],
        reads_unknown=reads_unknown,
    )
    if not call.routed and not isinstance(result, BaseResponse):
        # a function another view calls: its own value, stored as a value
        reason = policy.verdict(policy.VIEW, call.opts, None, facts)
        if reason == policy.STORED:
            fill.keep_value(call, result, tags, versions)
        else:
            outcome.refused(call, reason)
        return result
    resp = returns.make_response(call.app, result, call.func_name())
    if resp.status_code != 200:
        call.refusal = policy.STATUS
        resp.headers["X-Cache"] = x_cache
        return resp
    reason = policy.verdict(policy.VIEW, call.opts, resp, facts)
    if reason != policy.STORED:
        outcome.refused(call, reason, resp)
        if reads_unknown is not None:
            x_cache = policy.not_stored_outcome(x_cache, reads_unknown)
    if resp.is_streamed or resp.direct_passthrough:
        resp.headers["X-Cache"] = x_cache
        return resp
    body, etag = entry.add_answer_headers(resp, call.opts)
    if reason == policy.STORED:
        fill.keep(call, resp, etag, body, tags, versions)
    resp.headers["X-Cache"] = x_cache
    inm = environ.get("HTTP_IF_NONE_MATCH")
    if inm and call.routed and entry.etag_matches(inm, etag):
        return entry.not_modified(
            call.app.response_class, resp.headers.items(), entry.NOT_MODIFIED_MISS_HEADERS
        )
    return resp
