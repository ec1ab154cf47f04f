"""Whether a GET request's cached call reads the cache: the bypass decision.

:func:`decide` checks, in order, and answers with the first ``policy`` bypass reason:

* a per-user view without an identity (:data:`~.policy.ANONYMOUS`: never a shared
  "user"); a shared view with an ``Authorization`` header and no
  ``ignore_authorization`` (its answer may depend on credentials);
* ``unless()`` true; the cache disabled; the store's bypass hooks (this thread holds
  uncommitted tracked changes, ``cache.disabled()``...);
* no key or tags can be built (``keying.Unkeyable``: warned once per endpoint);
* a client ``Cache-Control: no-cache`` with ``CACHE_HONOR_NO_CACHE`` on: the only bypass
  whose answer still refills the entry.

On the way it sets what the read needs: the call's ``identity``, ``key`` and
``tag_list`` (a route's key and tags, or a function's own, by ``keying``). A tag that is
not a valid tag raises: a programming error, not a miss.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..tags import normalize_tags
from . import context, keying, policy
from .identity import request_identity

if TYPE_CHECKING:
    from .call import CachedCall

__all__ = ["decide"]

log = logging.getLogger("flask_dataroom_cache")


def decide(call: CachedCall) -> tuple[bool, str] | None:
    """``None``: read the cache (``call.key`` and ``call.tag_list`` are set); else
    ``(refill, reason)``: answer without reading, the view's answer refilling the entry
    when ``refill`` (a client ``no-cache``)."""
    why = _reason_before_key(call)
    if why is not None:
        return False, why
    try:
        call.key, call.tag_list = _entry(call)
    except keying.Unkeyable:
        call.key = ""
        if call.views.first_warning("key", call.endpoint):
            log.warning("cannot build a cache key or tags for %r; not caching", call.func_name())
        return False, policy.NO_KEY
    normalize_tags(call.tag_list)  # a bad tag is a programming error: raise, not a miss
    environ = call.ctx.request.environ
    if call.state.settings.honor_no_cache and policy.client_no_cache(environ):
        return True, policy.CLIENT_NO_CACHE
    return None


def _reason_before_key(call: CachedCall) -> str | None:
    """Why the cache must not answer this request, before any key is built (sets the
    call's ``identity`` on a per-user view)."""
    opts = call.opts
    if not opts.shared:
        call.identity = request_identity(call.state, call.endpoint)
        if call.identity is None:
            return policy.ANONYMOUS
    elif "HTTP_AUTHORIZATION" in call.ctx.request.environ and not opts.ignore_authorization:
        return policy.AUTHORIZATION
    if opts.unless is not None and opts.unless():
        return policy.UNLESS
    store = call.store
    if not store.enabled:
        return policy.DISABLED
    if store.bypass_checks and (why := store.bypass_reason()) is not None:
        return why
    return None


def _entry(call: CachedCall) -> tuple[str, list[str]]:
    """The key and tags the call reads: a route's, or those of a cached function another
    view calls (its own name and arguments); :class:`~.keying.Unkeyable` when they cannot
    be built."""
    ctx = call.ctx
    req = ctx.request
    # what both keys are built from: the route's request, as its view sees it
    route = (
        call.state.settings.key_prefix,
        call.endpoint,
        call.opts,
        req,
        context.route_values(ctx),
        call.identity,
    )
    if call.func is not None and not call.routed:
        return keying.function_entry(*route, call.func[1], call.view, call.args, call.kwargs)
    key = keying.route_key(call.views.key_memo, *route)
    return key, keying.entry_tags(call.opts, call.endpoint, call.identity, req.view_args)
