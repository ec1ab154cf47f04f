"""Which entry a URL reads: the key and tags a cached view would use for a GET of a URL,
derived without running the view (``flask dataroom-cache inspect --view``).

:func:`locate` builds the request in ``app.test_request_context(url)``, matches it with the
app's URL map, finds the ``@cache.cached`` options on the endpoint's view (through
decorators applied above it, and on a class-based view's ``dispatch_request`` or ``get``),
runs the URL value preprocessors as Flask's dispatch would (the first one records the
matched values a key is built from), takes the identity (``user`` replaces the identity
function's result) and then asks :mod:`.keying` exactly what a request would:
:func:`.keying.route_key` and :func:`.keying.entry_tags`. Nothing is read from or written
to the cache here, and the view never runs (``before_request`` functions neither: pass
``user`` when the identity function needs them).

Only a route's own entry has a URL: a cached function another view calls is keyed by its
own arguments too (inspect its key instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from ..state import CacheState
from ..tags import normalize_tags
from . import context, keying
from .identity import request_identity
from .options import Options

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["NotACachedView", "ViewTarget", "locate", "view_options"]


class NotACachedView(LookupError):
    """The URL matches no route, or a route whose view is not cached (or not for this
    request: an anonymous request to a per-user view). The message names the URL and the
    endpoint."""


@dataclass(frozen=True)
class ViewTarget:
    """The entry a GET of ``url`` reads."""

    url: str
    endpoint: str
    key: str
    #: The tags a fill now would stamp (normalised: the epoch tag included).
    tags: tuple[str, ...]
    #: The identity keyed for (``None``: a shared view).
    identity: str | None
    shared: bool
    #: The view's ``stale_while_revalidate`` seconds (0: none).
    stale_while_revalidate: int


def view_options(view: Any) -> Options | None:
    """The ``@cache.cached`` options of a registered view function, or ``None``."""
    candidates = [view]
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        candidates += [
            getattr(view_class, "dispatch_request", None),
            getattr(view_class, "get", None),
        ]
    for found in candidates:
        for _ in range(8):  # through decorators applied above the cache (functools.wraps)
            if found is None:
                break
            opts = getattr(found, "__dataroom_cache__", None)
            if isinstance(opts, Options):
                return opts
            found = getattr(found, "__wrapped__", None)
    return None


def locate(
    app: Flask,
    state: CacheState,
    url: str,
    *,
    user: Any = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> ViewTarget:
    """The entry a GET of ``url`` (a path with its query string, or a full URL: the host
    is part of the key) reads, for ``user`` on a per-user view (default: what the
    identity function returns in that request). ``headers``: request headers, for the
    view's ``vary`` names. Raises :class:`NotACachedView` (no cached view, anonymous, an
    identity function that fails here, a URL that cannot be keyed)."""
    with app.test_request_context(url, method="GET", headers=headers) as ctx:
        req = ctx.request
        exc = req.routing_exception
        if isinstance(exc, RequestRedirect):
            raise NotACachedView(f"{url}: the app redirects it to {exc.new_url}")
        if isinstance(exc, MethodNotAllowed):
            raise NotACachedView(f"{url}: no GET route matches it")
        if isinstance(exc, NotFound) or exc is not None or req.url_rule is None:
            raise NotACachedView(f"{url}: no route of the app matches it")
        endpoint = req.url_rule.endpoint
        opts = view_options(app.view_functions.get(endpoint))
        if opts is None:
            raise NotACachedView(
                f"{url} matches endpoint {endpoint!r}, which is not a cached view "
                "(no @cache.cached on its view function)"
            )
        _preprocess_url_values(app, endpoint, req)
        identity: str | None = None
        if not opts.shared:
            identity = str(user) if user is not None else _identity(state, url, endpoint)
            if identity is None:
                raise NotACachedView(
                    f"{url} matches endpoint {endpoint!r}, cached per user, and this request "
                    "is anonymous (the identity function returned no id; anonymous requests "
                    "bypass the cache): give the user id (--user ID)"
                )
        try:
            key = keying.route_key(
                {},  # not the app's memo: this lookup must leave nothing behind
                state.settings.key_prefix,
                endpoint,
                opts,
                req,
                context.route_values(ctx),
                identity,
            )
            tags = normalize_tags(keying.entry_tags(opts, endpoint, identity, req.view_args))
        except keying.Unkeyable as exc:  # a request would bypass the cache too
            raise NotACachedView(f"{url}: endpoint {endpoint!r} cannot key it: {exc}") from None
    return ViewTarget(url, endpoint, key, tags, identity, opts.shared, opts.swr)


def _identity(state: CacheState, url: str, endpoint: str) -> str | None:
    """What the identity function says in the request built for ``url``; its failure
    (none registered, or it needs what ``before_request`` functions set up) is
    :class:`NotACachedView` asking for the user id."""
    try:
        return request_identity(state, endpoint)
    except Exception as exc:
        raise NotACachedView(
            f"{url} matches endpoint {endpoint!r}, cached per user, and the identity "
            f"function failed in a request built for it ({type(exc).__name__}: {exc}): "
            "give the user id (--user ID)"
        ) from None


def _preprocess_url_values(app: Flask, endpoint: str, req: Any) -> None:
    """The URL value preprocessors, in the order Flask's ``preprocess_request`` runs them
    (the app's, then each blueprint's, outermost first), without the ``before_request``
    functions: the first one (``context.snapshot_view_args``) records the matched values."""
    for name in (None, *reversed(req.blueprints)):
        for func in app.url_value_preprocessors.get(name, ()):
            func(endpoint, req.view_args)
