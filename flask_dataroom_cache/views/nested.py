"""A cached view function called while another cached view runs (an alias route returning
``other_view()``): it runs directly, without a caching layer of its own, and its response
becomes part of the outer's, whose entry is not stored when that would lose what the inner
one declares (``policy.nested_verdict``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import keying, outcome, policy

if TYPE_CHECKING:
    from .call import CachedCall

__all__ = ["check"]


def check(inner: CachedCall, outer: CachedCall) -> None:
    """Prepare ``inner`` to run as part of ``outer`` (its context and endpoint), and mark
    ``outer``'s entry as refused (``outer.nested_refusal``, warned once) when storing it
    would lose what ``inner`` declares."""
    inner.ctx = outer.ctx
    inner.endpoint = outer.endpoint
    inner.routed = False
    if not outer.key:
        return  # the outer bypassed the cache: it stores nothing anyway
    opts = inner.opts

    def inner_tags() -> list[str] | None:
        try:
            return keying.entry_tags(
                opts, inner.endpoint, inner.identity, None, (inner.view, inner.args, inner.kwargs)
            )
        except Exception:
            return None

    reason = policy.nested_verdict(
        opts,
        outer.opts,
        "HTTP_AUTHORIZATION" in inner.ctx.request.environ,
        lambda: bool(opts.unless and opts.unless()),
        inner_tags,
        outer.tag_list,
    )
    if reason != policy.STORED:
        outer.nested_refusal = reason  # refused when the outer's response is checked
        outcome.warn(outer, reason, outer.func_name())
