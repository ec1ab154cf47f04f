"""The cached-GET route decorator: ``@cache.cached(...)``, ``@cache.identity``, ``cache.skip()``.

What a cached view does on each request (see ``docs/decorator.md`` for the user guide):

1. Anything but GET/HEAD passes straight through. So does a request the cache must not
   answer: ``unless()`` true, the store's bypass hooks (this thread holds uncommitted
   tracked changes), an ``Authorization`` header on a *shared* view (unless it declares
   ``ignore_authorization=True``: its response does not depend on credentials), no
   identity on a per-user view, a client ``Cache-Control: no-cache`` when
   ``CACHE_HONOR_NO_CACHE`` is on (that one still refills the entry). Those answers carry
   ``X-Cache: BYPASS``.
2. The key is :func:`~flask_dataroom_cache.keys.build_key` (what ``get_cache_key`` uses,
   injective) over the endpoint, the view args, the normalised query string, the ``vary``
   headers and the identity (per-user views only).
3. A hit rebuilds the response from the stored body, status and headers: no view call, no
   JSON serialisation, one backend round trip. ``If-None-Match`` matching the stored strong
   ``ETag`` gives a 304.
4. A miss joins the in-process single flight for the key (one computes, the others wait
   and read what it stored), optionally takes a cross-process lock (``lock=True``),
   captures the tag versions *before* running the view, runs it, and stores the response
   only if it is a complete 200 that is safe to share with whoever the key belongs to,
   checked when the view returns and again on the final response (after every
   after-request function and the session save), which may still forbid it
   (``no-store``). The flight and lock are released after the write.

What the view returns (``returns``): a cached function another view calls returns its own
value, hit or miss (a non-response value is stored as a value entry when the codec gives
it back identical); a route's view must return what ``make_response`` accepts (else a
``TypeError`` about decorator order); an ``async def`` view runs through
``app.ensure_sync``.

Where each step lives:

=====================  ==============================================================
``__init__``           this entry point: :func:`cached`, :func:`skip`, :func:`install`
                       / :func:`uninstall` (the app hooks), :class:`ViewState`
``options``            the decorator's arguments, validated once
``identity``           whose entry a per-user view reads (``@cache.identity``)
``keying``             the key and the tags of an entry
``entry``              the stored entry format, ETag, ``If-None-Match``, 304s and hits
``httpheaders``        how ``If-None-Match``, ``ETag`` and ``Cache-Control`` are parsed
``returns``            what a view or function returns, and what of it is kept
``policy``             whether a response is stored, and why not (pure rules)
``flight``             single flight, the cross-process lock, stale-while-revalidate
``fill``               a miss's entry, kept until the final response, then written
``context``            what a request carries (pending fills), the request-end hooks
``call``               the control flow of one call
=====================  ==============================================================
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from flask import Flask, request_finished

from ..apphooks import remove_app_hook
from ..state import CacheState
from . import context, returns
from .call import CachedCall
from .flight import Flights
from .identity import MissingIdentityError
from .keying import unique_name
from .options import Options

if TYPE_CHECKING:
    from ..extension import DataRoomCache

__all__ = ["MissingIdentityError", "ViewState", "cached", "install", "skip", "uninstall"]

log = logging.getLogger("flask_dataroom_cache")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class ViewState:
    """One app's decorator state (``CacheState.views``)."""

    #: Keys being computed in this process (single flight).
    flights: Flights = field(default_factory=Flights)
    #: Built keys by everything that goes into them (bounded: cleared when full).
    key_memo: dict[Any, str] = field(default_factory=dict)
    #: ``(kind, endpoint)`` refusals already logged once.
    warned: set[tuple[str, str | None]] = field(default_factory=set)
    #: How many responses were not stored, by ``(endpoint, reason)`` (``policy`` reasons).
    refusals: dict[tuple[str | None, str], int] = field(default_factory=dict)

    def first_warning(self, kind: str, endpoint: str | None) -> bool:
        """True the first time ``kind`` is warned for ``endpoint`` (then remembered)."""
        mark = (kind, endpoint)
        if mark in self.warned:
            return False
        self.warned.add(mark)
        return True

    def count_refusal(self, endpoint: str | None, reason: str) -> None:
        """Count one response of ``endpoint`` not stored, for ``reason``."""
        mark = (endpoint, reason)
        self.refusals[mark] = self.refusals.get(mark, 0) + 1


def cached(
    ext: DataRoomCache,
    timeout: int | None = None,
    *,
    tags: Iterable[str] | Callable[..., Iterable[str]] | None = None,
    shared: bool = False,
    vary: Iterable[str] = (),
    unless: Callable[[], Any] | None = None,
    lock: bool = False,
    stale_while_revalidate: int = 0,
    cache_control: str | None = None,
    query: bool | Iterable[str] = True,
    lock_timeout: int | None = None,
    ignore_authorization: bool = False,
) -> Callable[[F], F]:
    """Build the decorator; ``DataRoomCache.cached`` is the public entry point."""
    opts = Options(
        timeout,
        tags,
        shared,
        vary,
        unless,
        lock,
        stale_while_revalidate,
        cache_control,
        query,
        lock_timeout=lock_timeout,
        ignore_authorization=ignore_authorization,
    )

    def decorator(view: F) -> F:
        is_async = returns.is_async(view)  # raises TypeError if Flask cannot run it
        name = unique_name(view)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return CachedCall(ext, opts, view, args, kwargs, (wrapper, name), is_async).run()

        wrapper.__dataroom_cache__ = opts  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorator


def skip() -> None:
    """Inside a cached view: do not store the response of this request.

    The mark lives in the request's WSGI environ (``g`` may outlive one request when an
    app context is already pushed, e.g. in tests)."""
    ctx = context.current_context()
    if ctx is not None:
        ctx.request.environ[context.SKIP_KEY] = True


def install(app: Flask, state: CacheState) -> None:
    """Called once by ``DataRoomCache.init_app``: per-app view state, the first URL value
    preprocessor (the route's values as matched, before one pops ``<tenant>`` or
    ``<lang>`` into ``g``), the hook that stores a miss's response once the final response
    is known, and the teardown that drops a fill that never saw it."""
    state.views = ViewState()
    request_finished.connect(context.request_finished, sender=app, weak=False)
    # app-level preprocessors run before blueprints': first of all
    app.url_value_preprocessors.setdefault(None, []).insert(0, context.snapshot_view_args)
    app.teardown_request(context.end_request)


def uninstall(app: Flask, state: CacheState) -> None:
    """Detach what :func:`install` attached to ``app``; other apps keep theirs."""
    request_finished.disconnect(context.request_finished, sender=app)
    remove_app_hook(app.url_value_preprocessors, context.snapshot_view_args)
    remove_app_hook(app.teardown_request_funcs, context.end_request)
    state.views = None
