"""The cached-GET route decorator: ``@cache.cached(...)``, ``@cache.identity``, ``cache.skip()``.

What a cached view does on each request (see ``docs/decorator.md`` for the user guide):

1. Anything but GET/HEAD passes straight through. So does a request the cache must not
   answer: ``unless()`` true, the store's bypass hooks (this thread holds uncommitted
   tracked changes), an ``Authorization`` header on a *shared* view (unless it declares
   ``ignore_authorization=True``: its response does not depend on credentials), no identity on a
   per-user view, a client ``Cache-Control: no-cache`` when ``CACHE_HONOR_NO_CACHE`` is on
   (that one still refills the entry). Those answers carry ``X-Cache: BYPASS``.
2. The key is :func:`~flask_dataroom_cache.keys.build_key` (what ``get_cache_key`` uses,
   injective) over the endpoint, the view args, the normalised query string, the ``vary``
   headers and the identity (per-user views only).
3. A hit rebuilds the response from the stored body, status and headers: no view call, no
   JSON serialisation, one backend round trip. ``If-None-Match`` matching the stored strong
   ``ETag`` gives a 304.
4. A miss joins the in-process single flight for the key (one computes, the others wait and
   read what it stored), optionally takes a cross-process lock (``lock=True``), captures the
   tag versions *before* running the view, runs it, and stores the response only if it is
   a complete 200 that is safe to share with whoever the key belongs to. The view's own
   response is checked and snapshotted when it returns; the write waits for the final
   response (``request_finished``, after every after-request function and the session
   save), which may still forbid it (``no-store``); the flight and lock are released after
   the write. What waits is kept on the request context (:class:`_RequestFills`), never in
   the WSGI environ a copied context shares. A request never waits on a single flight
   while it leads one itself (a plain view calling cached functions: the same key twice,
   or two requests each holding the key the other wants): it computes instead. A cached
   function called after ``request_finished`` (in a ``stream_with_context`` generator) is
   stored at once, on the view-level checks.

Stored value: raw bytes (the codec's ``B`` flag, compressed above the threshold), never
pickle: ``DRV2`` + a few text lines (soft expiry, ETag, headers) + a blank line + the
body. Stale-while-revalidate keeps the entry for ``timeout + stale_while_revalidate`` in
the backend and records the *soft* expiry (``timeout``) in the header; an invalidated tag
makes the backend refuse the entry outright (its version tokens no longer match), so a
stale entry is only ever one that *expired*, never one that was invalidated.

What the view returns (:mod:`.returns`): a cached function another view calls returns its
own value, hit or miss (a non-response value is stored as a value entry, ``DRF1``, when
the codec gives it back identical); a route's view must return what ``make_response``
accepts (else a ``TypeError`` about decorator order); an ``async def`` view runs through
``app.ensure_sync``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlencode

from flask import Flask, Response, current_app, request_finished
from flask.globals import _cv_request
from werkzeug.datastructures import Headers
from werkzeug.wrappers import Response as BaseResponse

from . import returns
from .httpheaders import cache_control_directives, etag_matches, normalize_etag
from .keys import build_key
from .state import EXTENSION_KEY, CacheState
from .store import MISSING
from .tags import normalize_tags, user_tag

if TYPE_CHECKING:
    from flask.ctx import RequestContext

    from .extension import DataRoomCache

__all__ = ["MissingIdentityError", "ViewState", "cached", "install", "skip"]

log = logging.getLogger("flask_dataroom_cache")
F = TypeVar("F", bound=Callable[..., Any])

#: How long a waiting request waits for the in-process leader computing the same key.
FLIGHT_WAIT = 10.0
#: TTL of the cross-process fill lock (``lock=True``) and of the stale-refresh lock, unless
#: the view declares ``lock_timeout=``.
LOCK_TTL = 5
#: How long a request that lost the cross-process lock polls the cache before computing
#: (a view's ``lock_timeout``, when it declares one).
LOCK_WAIT = 5.0

_MAGIC = "DRV2"
_MAGIC_B = b"DRV2\n"
#: Bound of the per-app memo of built keys (cleared when full).
KEY_MEMO_MAX = 4096
_ENTITY = "~view"
_SKIP_KEY = "dataroom_cache.skip"
#: Set in the WSGI environ while a cached view runs: a cached view function it calls (an
#: alias route returning ``other_view()``) runs directly, without a caching layer of its
#: own (it would key itself by the outer endpoint and wait on the outer's single flight).
_ACTIVE_KEY = "dataroom_cache.active"
#: An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: RequestContext attribute: the URL values as matched (see ``_snapshot_view_args``).
_VIEW_ARGS_ATTR = "_dataroom_cache_view_args"
#: Attribute of Flask's ``RequestContext`` holding its :class:`_RequestFills`, or
#: :data:`_FINISHED` once ``request_finished`` fired with nothing pending. On the context
#: object, not in the WSGI environ: a context copied by ``copy_current_request_context``
#: shares the environ, and its teardown must not finish this request's fills.
_FILLS_ATTR = "_dataroom_cache_fills"
#: ``request_finished`` fired for this context, which had no :class:`_RequestFills`.
_FINISHED = "finished"
#: Never stored: recomputed, per connection, or per response.
_DROP_HEADERS = frozenset(
    {
        "content-length",
        "set-cookie",
        "date",
        "x-cache",
        "x-cache-stale",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "age",
    }
)
#: Kept on a 304 (RFC 9110 section 15.4.5).
_304_HEADERS = frozenset(
    {"etag", "cache-control", "vary", "content-location", "expires", "x-cache", "x-cache-stale"}
)
#: Kept on a 304 built on a miss from the view's own response: its cookies must reach the
#: client (such a response is never stored, so a later hit has none to drop).
_304_MISS_HEADERS = _304_HEADERS | {"set-cookie"}
_HIT = ("X-Cache", "HIT")
_STALE = ("X-Cache-Stale", "1")


#: A decoded entry: ``(soft_expiry, etag, headers, body)``.
_Entry = tuple[float, str, list[tuple[str, str]], bytes]
#: A fill waiting for the final response: ``(headers, etag, body, tags, versions)``;
#: ``etag`` ``None``: ``body`` is a function's value, encoded (returns.py).
_Pending = tuple[list[tuple[str, str]], str | None, bytes, list[str], Any]


class MissingIdentityError(RuntimeError):
    """A per-user cached view ran with no identity provider registered."""


# -- identity ------------------------------------------------------------------------------
def _flask_login_identity() -> Callable[[], Any] | None:
    """Flask-Login's ``current_user`` as an identity function, if usable in this app."""
    try:
        from flask_login import current_user  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    if not hasattr(current_app, "login_manager"):
        return None

    def identity() -> Any:
        user = current_user
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return user.get_id()

    return identity


def _identity_fn(state: CacheState) -> Callable[[], Any] | None:
    fn = state.identity
    if fn is None:
        fn = state.extension._identity_fn
    if fn is None:
        fn = _flask_login_identity()
    return fn


# -- single flight ---------------------------------------------------------------------------
class _Flights:
    """Per-app registry of keys being computed in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}

    def lead(self, key: str) -> threading.Event | None:
        """``None`` if the caller now leads ``key``; else the leader's event to wait on."""
        with self._lock:
            event = self._running.get(key)
            if event is None:
                self._running[key] = threading.Event()
            return event

    def done(self, key: str) -> None:
        with self._lock:
            event = self._running.pop(key, None)
        if event is not None:
            event.set()


class _RequestFills:
    """One request context's cached calls: the keys whose single flight it leads, and
    the calls whose response passed the view-level checks and waits for the final
    response to be stored (by key: a second call of a key in one request keeps the
    first)."""

    __slots__ = ("finished", "leading", "pending")

    def __init__(self, finished: bool = False) -> None:
        #: ``request_finished`` fired: a cached call made now (a ``stream_with_context``
        #: generator) fills at once, on the view-level checks.
        self.finished = finished
        self.leading: set[str] = set()
        self.pending: dict[str, _CachedCall] = {}

    def finish(self, final: Response | None) -> None:
        """Store every pending fill ``final`` allows and release what each held; every
        call is finished even if one raises."""
        calls = list(self.pending.values())
        self.pending.clear()
        error: BaseException | None = None
        for call in calls:
            try:
                call.finish(final)
            except BaseException as exc:  # finish the others, then raise the first
                if error is None:
                    error = exc
        if error is not None:
            raise error


@dataclass
class ViewState:
    """One app's decorator state (``CacheState.views``)."""

    #: Keys being computed in this process (single flight).
    flights: _Flights = field(default_factory=lambda: _Flights())
    #: Built keys by everything that goes into them (bounded: cleared when full).
    key_memo: dict[Any, str] = field(default_factory=dict)
    #: ``(kind, endpoint)`` refusals already logged once.
    warned: set[tuple[str, str | None]] = field(default_factory=set)


def _fills_of(ctx: RequestContext) -> _RequestFills:
    """The :class:`_RequestFills` of ``ctx``, created on its first miss."""
    fills = ctx.__dict__.get(_FILLS_ATTR)
    if fills is None or fills is _FINISHED:
        fills = _RequestFills(finished=fills is _FINISHED)
        ctx.__dict__[_FILLS_ATTR] = fills
    return cast(_RequestFills, fills)


def install(app: Flask, state: CacheState) -> None:
    """Called once by ``DataRoomCache.init_app``: per-app view state, and the hook that
    stores a miss's response once the final response is known."""
    state.views = ViewState()
    request_finished.connect(_request_finished, sender=app, weak=False)
    # First of all URL value preprocessors (app-level ones run before blueprints'): the
    # route's values as matched, before one pops <tenant> or <lang> into g.
    app.url_value_preprocessors.setdefault(None, []).insert(0, _snapshot_view_args)


def _snapshot_view_args(endpoint: str | None, values: dict[str, Any] | None) -> None:
    ctx = _cv_request.get(None)
    if ctx is not None and values:
        ctx.__dict__[_VIEW_ARGS_ATTR] = dict(values)


def _route_values(ctx: RequestContext) -> dict[str, Any]:
    """The URL values the route matched (what a key is built from), even if a URL value
    preprocessor has since removed some from ``request.view_args``."""
    got = ctx.__dict__.get(_VIEW_ARGS_ATTR)
    return got if got is not None else (ctx.request.view_args or {})


def _request_finished(sender: Flask, response: Response | None = None, **_: Any) -> None:
    """``request_finished``: after every after-request function and the session save, so
    ``response`` is what the client gets. Stores the pending fills of this request, if
    any (misses), when the final response still allows it, and marks the context
    finished (a cached call made later cannot wait for a response already sent)."""
    ctx = _cv_request.get(None)
    if ctx is not None:
        fills = ctx.__dict__.get(_FILLS_ATTR)
        if fills is None:
            ctx.__dict__[_FILLS_ATTR] = _FINISHED
        elif fills is not _FINISHED:
            fills.finished = True
            fills.finish(response)


def end_request() -> None:
    """Teardown (``DataRoomCache.init_app``): a pending fill that never saw the final
    response (the request failed after the view, or the view was called without Flask's
    dispatch) is dropped, and the single flight and lock it held are released. Only the
    fills of the context being torn down: a copy of it popped in another thread has none."""
    ctx = _cv_request.get(None)
    if ctx is not None:
        fills = ctx.__dict__.get(_FILLS_ATTR)
        if fills is not None and fills is not _FINISHED:
            fills.finish(None)


def skip() -> None:
    """Inside a cached view: do not store the response of this request.

    The mark lives in the request's WSGI environ (``g`` may outlive one request when an
    app context is already pushed, e.g. in tests)."""
    ctx = _cv_request.get(None)
    if ctx is not None:
        ctx.request.environ[_SKIP_KEY] = True


# -- stored entries ---------------------------------------------------------------------------
def _pack(headers: list[tuple[str, str]], etag: str, soft_expiry: float, body: bytes) -> bytes:
    """``DRV2\\n{soft expiry}\\n{etag}\\n{Name:value\\n}...\\n{body}``: parsed by splitting
    lines, cheaper than JSON on every hit. Header lines never contain a newline (werkzeug
    refuses them, and :meth:`_CachedCall.fill` checks again)."""
    lines = [_MAGIC, repr(soft_expiry), etag]
    lines.extend(f"{k}:{v}" for k, v in headers)
    return "\n".join(lines).encode("utf-8") + b"\n\n" + body


def _parse_head(head: bytes) -> tuple[float, str, tuple[tuple[str, str], ...]] | None:
    try:
        text = head.decode("utf-8")
        if "\r" in text:
            return None
        lines = text.split("\n")
        soft = float(lines[1])
        etag = lines[2]
        headers = []
        for line in lines[3:]:
            name, colon, val = line.partition(":")
            if not colon or not name:
                return None
            headers.append((name, val))
    except (IndexError, ValueError):
        return None
    if not etag:
        return None
    return soft, etag, tuple(headers)


#: Parsed entry heads by their bytes: a pure function's memo (the same bytes always parse
#: to the same value, whichever app read them), bounded, cleared when full.
_HEADS: dict[bytes, tuple[float, str, tuple[tuple[str, str], ...]]] = {}
_HEADS_MAX = 2048


def _unpack(value: Any) -> _Entry | None:
    """``(soft_expiry, etag, headers, body)`` or ``None`` for anything we did not write."""
    if not isinstance(value, bytes) or not value.startswith(_MAGIC_B):
        return None
    end = value.find(b"\n\n")
    if end < 0:
        return None
    head = value[:end]
    parsed = _HEADS.get(head)
    if parsed is None:
        parsed = _parse_head(head)
        if parsed is None:
            return None
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        _HEADS[head] = parsed
    return parsed[0], parsed[1], list(parsed[2]), value[end + 2 :]


def _headers(items: list[tuple[str, str]]) -> Headers:
    """A ``Headers`` holding ``items``. The values were checked when the entry was filled
    and again when its head was parsed (no CR or LF), so the per-item validation of
    ``Headers.extend`` is skipped when werkzeug's layout allows it."""
    headers = Headers()
    if _FAST_HEADERS:
        headers._list = items
    else:  # pragma: no cover - another werkzeug layout
        headers.extend(items)
    return headers


_FAST_HEADERS = isinstance(getattr(Headers(), "_list", None), list)


def _etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def _etag_matches(header: str, etag: str) -> bool:
    """``If-None-Match`` (its environ value: the WSGI server joined every line) matches
    ``etag``, weak comparison; parsed by :func:`.httpheaders.etag_matches`."""
    return etag_matches((header,), etag)


def _cache_control_tokens(value: str | None) -> set[str]:
    return cache_control_directives((value,)) if value else set()


class _Options:
    __slots__ = (
        "cache_control",
        "ignore_authorization",
        "lock",
        "lock_timeout",
        "query",
        "shared",
        "swr",
        "tags",
        "timeout",
        "unless",
        "vary",
        "vary_environ",
        "vary_names",
    )

    def __init__(
        self,
        timeout: int | None,
        tags: Iterable[str] | Callable[..., Iterable[str]] | None,
        shared: bool,
        vary: Iterable[str],
        unless: Callable[[], Any] | None,
        lock: bool,
        stale_while_revalidate: int,
        cache_control: str | None,
        query: bool | Iterable[str],
        lock_timeout: int | None = None,
        ignore_authorization: bool = False,
    ) -> None:
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1
        ):
            raise ValueError(f"timeout must be an integer >= 1 (seconds) or None, got {timeout!r}")
        swr = stale_while_revalidate
        if isinstance(swr, bool) or not isinstance(swr, int) or swr < 0:
            raise ValueError(f"stale_while_revalidate must be an integer >= 0, got {swr!r}")
        if isinstance(tags, str):
            raise TypeError("tags must be a list of strings or a callable, not a single string")
        if isinstance(vary, str):
            vary = (vary,)
        self.timeout = timeout
        self.tags = tags if tags is None or callable(tags) else tuple(tags)
        self.shared = bool(shared)
        names = [part.strip() for h in vary for part in str(h).split(",")]
        for name in names:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"vary: {name!r} is not a header name")
        self.vary = tuple(dict.fromkeys(names))
        #: Response ``Vary`` names the key covers (lower case): the declared ones.
        self.vary_names = frozenset(h.lower() for h in self.vary)
        self.vary_environ = tuple(
            "HTTP_" + h.upper().replace("-", "_")
            if h.lower() not in ("content-type", "content-length")
            else h.upper().replace("-", "_")
            for h in self.vary
        )
        self.unless = unless
        self.lock = bool(lock)
        self.swr = swr
        if lock_timeout is not None:
            if (
                isinstance(lock_timeout, bool)
                or not isinstance(lock_timeout, int)
                or lock_timeout < 1
            ):
                raise ValueError(
                    f"lock_timeout must be an integer >= 1 (seconds) or None, got {lock_timeout!r}"
                )
            if not self.lock and not swr:
                raise ValueError(
                    "lock_timeout is the TTL of the lock taken with lock=True (or by "
                    "stale_while_revalidate's refresh): set one of them, or drop lock_timeout"
                )
        #: TTL of the cross-process locks (None: LOCK_TTL); lock waiters poll that long.
        self.lock_timeout = lock_timeout
        if ignore_authorization and not shared:
            raise ValueError(
                "ignore_authorization=True is for shared views (shared=True) whose response "
                "does not depend on the request's credentials; a per-user view already "
                "serves requests carrying Authorization, keyed by their identity"
            )
        #: A shared view serves (and fills from) requests carrying ``Authorization``.
        self.ignore_authorization = bool(ignore_authorization)
        self.cache_control = cache_control
        if isinstance(query, bool):
            self.query: bool | frozenset[str] = query
        elif isinstance(query, str):
            self.query = frozenset((query,))
        else:
            self.query = frozenset(query)


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
    opts = _Options(
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
        name = _unique_name(view)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return _CachedCall(ext, opts, view, args, kwargs, (wrapper, name), is_async).run()

        wrapper.__dataroom_cache__ = opts  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorator


_NAMES: dict[str, int] = {}
_NAMES_LOCK = threading.Lock()


def _unique_name(view: Any) -> str:
    """``module.qualname`` of a decorated function, with ``#2``, ``#3``... for further
    functions of the same name (a factory's): part of the key of a cached function called
    by another view. Decoration order is import order, so every process agrees."""
    base = f"{getattr(view, '__module__', '')}.{getattr(view, '__qualname__', '?')}"
    with _NAMES_LOCK:
        seen = _NAMES.get(base, 0) + 1
        _NAMES[base] = seen
    return base if seen == 1 else f"{base}#{seen}"


def _all_vary(headers: Any) -> set[str]:
    """Every name of every ``Vary`` line, lower case (werkzeug's ``resp.vary`` reads the
    first line only)."""
    return {
        part.strip().lower()
        for line in headers.getlist("Vary")
        for part in line.split(",")
        if part.strip()
    }


def _all_cache_control(headers: Any) -> Any:
    """The directives of every ``Cache-Control`` line (not only the first)."""
    return cache_control_directives(headers.getlist("Cache-Control"))


class _Unbindable(Exception):
    """A cached function's call arguments do not bind to its own signature."""


def _leads_to(view: Any, wrapper: Any) -> bool:
    """True if ``view`` is ``wrapper`` or wraps it through ``__wrapped__`` (decorators
    applied above ``@cache.cached`` with ``functools.wraps``). A closure is no evidence:
    a view defined in a factory closes over the cached functions it calls."""
    for _ in range(8):
        if view is None or view is wrapper:
            break
        view = getattr(view, "__wrapped__", None)
    return view is wrapper and view is not None


def _query_covers(outer: bool | frozenset[str], inner: bool | frozenset[str]) -> bool:
    """True if a key built with ``outer``'s query option holds every query parameter one
    built with ``inner``'s would."""
    if not inner or outer is True:
        return True
    if inner is True or outer is False:
        return False
    return inner <= outer


class _CachedCall:
    """One request through a cached view."""

    __slots__ = (
        "app",
        "args",
        "ctx",
        "endpoint",
        "ext",
        "fills",
        "func",
        "identity",
        "is_async",
        "key",
        "kwargs",
        "no_store",
        "opts",
        "pending",
        "releases",
        "routed",
        "state",
        "store",
        "tag_list",
        "versions",
        "view",
        "views",
    )

    def __init__(
        self,
        ext: DataRoomCache,
        opts: _Options,
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
        #: ``(the decorated wrapper, its qualified name)``: tells a route's own call from a
        #: cached function another view calls (keyed by the function and its arguments).
        self.func = func
        #: An ``async def`` view: the route's own call runs it through ``app.ensure_sync``;
        #: any other call returns its coroutine, not cached (returns.py).
        self.is_async = is_async
        #: True for the route's own view; False for a cached function another view calls
        #: (its tags come from its own arguments; conditional requests are not its).
        self.routed = True
        #: Set by a nested cached call whose declarations this entry would lose.
        self.no_store = False
        self.identity: str | None = None
        self.key = ""
        #: The entry's tags, built once per request (the read checks them, the fill uses them).
        self.tag_list: list[str] = []
        #: Tag versions seen by the last missing read: stamped on what the view computes.
        self.versions: tuple[str, ...] | None = None
        #: ``(headers, etag, body, tags, versions)`` to store once the final response is
        #: known (:meth:`finish`); ``releases`` run after that (flight, lock).
        self.pending: _Pending | None = None
        self.releases: list[Callable[[], None]] = []
        #: This request's :class:`_RequestFills` (set on a miss).
        self.fills: _RequestFills | None = None

    # -- the request ------------------------------------------------------------------------
    def run(self) -> Any:
        ctx: RequestContext | None = _cv_request.get(None)
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
        outer: _CachedCall | None = environ.get(_ACTIVE_KEY)
        if outer is not None:  # called by a cached view: its response is the outer's
            self.check_nested(outer)
            return self.view(*self.args, **self.kwargs)
        app = self.app = ctx.app
        state = app.extensions.get(EXTENSION_KEY)
        if state is None:
            state = self.ext.state(app)  # raises the "not initialised" error
        self.state = state
        self.views = cast(ViewState, state.views)  # set by views.install in init_app
        self.store = state.store
        opts = self.opts
        # a function another view calls (keyed by its own arguments, returns its value)
        self.routed = not self.called_by_another_view(app)
        if self.is_async and not self.routed:
            self.warn_once(
                f"async {self.func_name()}",
                "async cached function %r called by another view: not cached (only an "
                "async view's own route call is, for now); it returns its coroutine",
                self.func_name(),
            )
            return self.view(*self.args, **self.kwargs)

        if not opts.shared:
            fn = _identity_fn(state)
            if fn is None:
                raise MissingIdentityError(
                    f"view {self.endpoint!r} is cached per user (the default) but no identity "
                    "provider is registered: decorate a function returning the user id with "
                    "@cache.identity, install Flask-Login, or declare the view "
                    "@cache.cached(shared=True) if its response is the same for everyone"
                )
            ident = fn()
            if ident is None or ident == "" or ident is False:
                return self.bypass(fill=False)  # anonymous: never a shared "user"
            if isinstance(ident, bool) or not isinstance(ident, str | int | uuid.UUID):
                raise TypeError(
                    f"the identity provider returned {type(ident).__name__} {ident!r}: return "
                    "the user's id (str, int or UUID), or None for an anonymous request"
                )
            self.identity = str(ident)
        elif "HTTP_AUTHORIZATION" in environ and not opts.ignore_authorization:
            return self.bypass(fill=False)  # a shared answer may depend on credentials

        if opts.unless is not None and opts.unless():
            return self.bypass(fill=False)
        store = self.store
        if not store.enabled or (store.bypass_checks and store.must_bypass()):
            return self.bypass(fill=False)
        try:
            if not self.routed:
                # the route's URL values too: what the function reads from g or request
                self.key = self._build_key(_route_values(ctx), environ, self.call_params())
                self.tag_list = self.tags()
            else:
                self.key = self.build_key(_route_values(ctx), environ)
        except (TypeError, _Unbindable) as exc:
            if not self.routed and not isinstance(exc, _Unbindable) and self.key:
                raise  # the tags callable's own error: a programming error, like a route's
            self.key = ""
            self.warn_once(
                "key", "cannot build a cache key or tags for %r; not caching", self.func_name()
            )
            return self.bypass(fill=False)
        if self.routed:
            self.tag_list = self.tags()
        tags = self.tag_list
        normalize_tags(tags)  # a bad tag is a programming error: raise, not a cache miss
        if state.settings.honor_no_cache and self.client_no_cache(environ):
            return self.bypass(fill=True)

        entry = self.lookup()
        if entry is not None:
            if opts.swr and time.time() >= entry[0]:
                fresh = self.refresh_stale()
                if fresh is not None:
                    return fresh
                self.store.metrics.incr("stale_hits", endpoint=self.endpoint)
                return self.hit(entry, environ, stale=True)
            return self.hit(entry, environ)
        return self.miss(environ)

    def check_nested(self, outer: _CachedCall) -> None:
        """A cached view function called while ``outer`` (a cached view) runs: it runs
        directly, and its response becomes part of the outer's. The outer entry is not
        stored when that would lose what this one declares: per-user data in a shared
        entry, an ``unless`` that holds now, request headers or query parameters it varies
        on that the outer's key does not (each would reach other users), or tags the
        outer does not carry (its entry would outlive their invalidation)."""
        self.ctx = outer.ctx
        self.endpoint = outer.endpoint
        self.routed = False
        if not outer.key:
            return  # the outer bypassed the cache: it stores nothing anyway
        inner_opts, outer_opts = self.opts, outer.opts
        reason = None
        if not inner_opts.shared and outer_opts.shared:
            reason = "a per-user cached view is called by the shared cached view %r"
        elif (
            outer_opts.ignore_authorization
            and not inner_opts.ignore_authorization
            and "HTTP_AUTHORIZATION" in self.ctx.request.environ
        ):
            reason = (
                "a shared cached view without ignore_authorization is called, with an "
                "Authorization header, by the cached view %r"
            )
        elif inner_opts.unless is not None and inner_opts.unless():
            reason = "a cached view called by the cached view %r is not cached now (unless)"
        elif not inner_opts.vary_names <= outer_opts.vary_names or not _query_covers(
            outer_opts.query, inner_opts.query
        ):
            reason = "a cached view called by the cached view %r varies on more than it does"
        else:
            try:
                inner = set(self.tags())
            except Exception:
                inner = None
            if inner is None or not inner <= set(outer.tag_list):
                reason = (
                    "a cached view called by the cached view %r has tags it does not carry"
                )
        if reason is not None:
            outer.no_store = True
            outer.warn_once("nested", reason + "; not storing it", outer.func_name())

    def called_by_another_view(self, app: Any) -> bool:
        """True when this cached function is not the request's route view (another view
        calls it): the route's arguments do not identify its result, its own do."""
        if self.func is None:
            return False
        wrapper = self.func[0]
        view = app.view_functions.get(self.endpoint)
        if _leads_to(view, wrapper):  # also a View whose ``decorators`` hold the cache
            return False
        view_class = getattr(view, "view_class", None)
        if view_class is not None:  # a View's dispatch_request, a MethodView's method
            if _leads_to(getattr(view_class, "dispatch_request", None), wrapper):
                return False
            method = self.ctx.request.method.lower()
            found = getattr(view_class, method, None)
            if found is None and method == "head":
                found = getattr(view_class, "get", None)
            return not _leads_to(found, wrapper)
        return True

    def func_name(self) -> str:
        return self.func[1] if self.func is not None else str(self.endpoint)

    def call_params(self) -> dict[str, Any]:
        """Key parameters of a cached function called by another view: its name and the
        arguments of this call (a value a key cannot hold raises TypeError: not cached)."""
        assert self.func is not None
        params: dict[str, Any] = {"~fn": self.func[1]}
        for i, value in enumerate(self.args):
            params[f"~a{i}"] = value
        for name, value in self.kwargs.items():
            params[f"~k.{name}"] = value
        return params

    def build_key(self, view_args: dict[str, Any], environ: dict[str, Any]) -> str:
        """The entry's key; memoised per app (``build_key`` is deterministic, the memo is
        keyed by everything that goes into it)."""
        opts = self.opts
        memo = self.views.key_memo
        try:
            memo_key = (
                self.endpoint,
                tuple(view_args.items()),
                tuple(map(type, view_args.values())),  # 1, 1.0 and True are equal keys
                environ.get("QUERY_STRING") if opts.query else None,
                tuple(map(environ.get, opts.vary_environ)) if opts.vary_environ else None,
                self.identity,
                opts.query if opts.query is not True else None,
                environ.get("HTTP_HOST") or environ.get("SERVER_NAME"),
                environ.get("SCRIPT_NAME"),
            )
            key = memo.get(memo_key)
        except TypeError:  # an unhashable view argument
            return self._build_key(view_args, environ)
        if key is None:
            key = self._build_key(view_args, environ)
            if len(memo) >= KEY_MEMO_MAX:
                memo.clear()
            memo[memo_key] = key
        return key

    def _build_key(
        self,
        view_args: dict[str, Any],
        environ: dict[str, Any],
        call: dict[str, Any] | None = None,
    ) -> str:
        params: dict[str, Any] = {}
        for name, val in view_args.items():
            params[name] = val if isinstance(val, str | int) else str(val)
        if call:
            params.update(call)  # as given: a type a key cannot hold raises TypeError
        query = self.opts.query
        if query and environ.get("QUERY_STRING"):
            items = self.ctx.request.args.items(multi=True)
            if query is not True:
                items = (kv for kv in items if kv[0] in query)  # type: ignore[operator]
            pairs = sorted(items, key=lambda kv: kv[0])  # stable: repeated names keep order
            if pairs:
                params["~q"] = urlencode(pairs)
        for i, env_name in enumerate(self.opts.vary_environ):
            params[f"~v{i}"] = environ.get(env_name)
        if self.identity is not None:
            params["~u"] = self.identity
        # the host and mount point: one app serving several tenants by hostname, or
        # mounted under several prefixes, answers differently for the same path
        params["~h"] = environ.get("HTTP_HOST") or environ.get("SERVER_NAME")
        if environ.get("SCRIPT_NAME"):
            params["~s"] = environ["SCRIPT_NAME"]
        return build_key(self.state.settings.key_prefix, _ENTITY, self.endpoint, params)

    @staticmethod
    def client_no_cache(environ: dict[str, Any]) -> bool:
        cc = environ.get("HTTP_CACHE_CONTROL")
        if cc and "no-cache" in _cache_control_tokens(cc):
            return True
        pragma = environ.get("HTTP_PRAGMA")
        return bool(pragma and "no-cache" in pragma.lower())

    def lookup(self) -> _Entry | returns.ValueEntry | None:
        try:
            value, self.versions = self.store.fetch(self.key, self.tag_list, self.endpoint)
        except Exception as exc:  # never fail a request for the cache
            self.store._error("view read", exc)
            self.versions = None
            return None
        if value is MISSING:
            return None
        entry: _Entry | returns.ValueEntry | None = _unpack(value)
        if entry is None and not self.routed:  # a function's value (not a response)
            entry = returns.unpack_value(value)
        if entry is None:
            self.safe_delete(self.key)
        return entry

    def safe_delete(self, key: str) -> None:
        try:
            self.store.delete(key)
        except Exception as exc:
            self.store._error("view delete", exc)

    # -- answers ---------------------------------------------------------------------------
    def hit(
        self, entry: _Entry | returns.ValueEntry, environ: dict[str, Any], stale: bool = False
    ) -> Any:
        if isinstance(entry, returns.ValueEntry):
            return entry.value  # decoded by this read: the caller's own copy
        _soft, etag, headers, body = entry
        headers.append(_HIT)
        if stale:
            headers.append(_STALE)
        inm = environ.get("HTTP_IF_NONE_MATCH")
        if inm and self.routed and _etag_matches(inm, etag):
            return self.not_modified(headers)
        return self.app.response_class(body, status=200, headers=_headers(headers))

    def not_modified(
        self, headers: Iterable[tuple[str, str]], kept: frozenset[str] = _304_HEADERS
    ) -> Response:
        keep = [(k, v) for k, v in headers if k.lower() in kept]
        resp = self.app.response_class(status=304, headers=keep)
        resp.automatically_set_content_length = False
        return resp

    def bypass(self, fill: bool) -> Any:
        self.store.metrics.incr("bypasses", endpoint=self.endpoint)
        if fill:
            return self.compute(self.ctx.request.environ, "BYPASS")
        result = self.call_view()
        if not self.routed and not isinstance(result, BaseResponse):
            return result  # a function's own value
        resp = self.respond(result)
        resp.headers["X-Cache"] = "BYPASS"
        return resp

    def miss(self, environ: dict[str, Any]) -> Any:
        flights = self.views.flights
        fills = self.fills = _fills_of(self.ctx)
        if self.key in fills.leading:
            # called again in this request (a plain view calling the function twice): the
            # flight is this request's own, released once its final response is known
            return self.compute(environ, "MISS")
        waiting = flights.lead(self.key)
        if waiting is not None:
            if fills.leading:
                # this request holds a flight until its final response: the leader of
                # this one may be waiting on it (a plain view calling a then b, another b
                # then a); compute rather than wait
                return self.compute(environ, "MISS")
            waiting.wait(FLIGHT_WAIT)
            value = self.lookup()
            if value is not None:
                return self.hit(value, environ)
            return self.compute(environ, "MISS")
        holding = bool(fills.leading)
        fills.leading.add(self.key)
        try:
            if not self.opts.lock:
                return self.compute(environ, "MISS")
            return self.compute_locked(environ, wait=not holding)
        finally:
            self.after_fill(self.end_flight)

    def end_flight(self) -> None:
        """Release the single flight this call leads."""
        if self.fills is not None:
            self.fills.leading.discard(self.key)
        self.views.flights.done(self.key)

    def lock_key(self, kind: str) -> str:
        prefix = self.state.settings.key_prefix
        return f"{prefix}:~{kind}:{self.key[len(prefix) + 1 :]}"

    def try_lock(self, lock_key: str, token: str) -> bool:
        """Take the lock, holding ``token`` (this call's own: only it releases the lock)."""
        ttl = self.opts.lock_timeout or LOCK_TTL
        try:
            return self.store.add(lock_key, token, ttl)
        except Exception as exc:
            self.store._error("view lock", exc)
            return True

    def release_lock(self, lock_key: str, token: str) -> None:
        """Release the lock if it still holds ``token``: past its TTL another request may
        hold it, and its lock is not ours to delete. A lock is not a cached value: no
        invalidation is published (near cache)."""
        try:
            self.store.release(lock_key, token)
        except Exception as exc:
            self.store._error("view lock release", exc)

    def compute_locked(self, environ: dict[str, Any], wait: bool = True) -> Any:
        """Compute holding the cross-process lock; if another process holds it, poll the
        cache for what it stores, taking the lock as soon as it is free: a holder whose
        response is not stored (a 404, ``skip()``, a cookie, a HEAD) releases it and
        leaves nothing to read, so the waiters must not poll out ``LOCK_WAIT``. Without
        ``wait`` (this request holds another flight and lock until its final response,
        which the holder may be waiting for) a held lock means compute at once."""
        lock_key = self.lock_key("lock")
        token = secrets.token_hex(16)
        if not self.try_lock(lock_key, token):
            if not wait:
                return self.compute(environ, "MISS")
            # a lock with a declared timeout is worth waiting for that long
            deadline = time.monotonic() + (self.opts.lock_timeout or LOCK_WAIT)
            delay = 0.01
            while True:
                if time.monotonic() >= deadline:
                    return self.compute(environ, "MISS")
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
                value = self.lookup()
                if value is not None:
                    return self.hit(value, environ)
                if self.try_lock(lock_key, token):
                    value = self.lookup()  # stored and released since our read
                    if value is not None:
                        self.release_lock(lock_key, token)
                        return self.hit(value, environ)
                    break
        try:
            return self.compute(environ, "MISS")
        finally:
            self.after_fill(functools.partial(self.release_lock, lock_key, token))

    def refresh_stale(self) -> Any:
        """After the soft expiry: one request (per key, across processes) recomputes; the
        others get ``None`` and serve the stale entry."""
        flights = self.views.flights
        if flights.lead(self.key) is not None:
            return None
        fills = self.fills = _fills_of(self.ctx)
        fills.leading.add(self.key)
        try:
            lock_key = self.lock_key("swr")
            token = secrets.token_hex(16)
            if not self.try_lock(lock_key, token):
                return None
            try:
                return self.compute(self.ctx.request.environ, "MISS")
            finally:
                self.after_fill(functools.partial(self.release_lock, lock_key, token))
        finally:
            self.after_fill(self.end_flight)

    def after_fill(self, release: Callable[[], None]) -> None:
        """Run ``release`` (end the single flight, free a lock) now, or after the pending
        fill is stored: waiters must find the entry when they wake up."""
        if self.pending is None:
            release()
        else:
            self.releases.append(release)

    def call_view(self) -> Any:
        """Run the view, marked as the active cached call of this request (an async one
        through ``app.ensure_sync``, as Flask runs an uncached async view)."""
        environ = self.ctx.request.environ
        environ[_ACTIVE_KEY] = self
        try:
            if self.is_async:
                handovers = self.store.handovers
                return returns.run_async(self.app, self.view, self.args, self.kwargs, handovers)
            return self.view(*self.args, **self.kwargs)
        finally:
            environ.pop(_ACTIVE_KEY, None)

    def respond(self, result: Any) -> Response:
        """``make_response`` of the route's result; a result it refuses is most often an
        object a decorator above the cache was meant to turn into a response."""
        try:
            return self.app.make_response(result)
        except TypeError as exc:
            if result is None:  # Flask's own message says it all
                raise
            raise returns.not_a_response(self.func_name(), result, exc) from exc

    def tags(self) -> list[str]:
        spec = self.opts.tags
        if spec is None:
            out: list[str] = []
        elif callable(spec):
            if self.routed:
                produced = spec(**(self.ctx.request.view_args or {}))
            else:  # its own arguments, by name
                try:
                    bound = inspect.signature(self.view).bind(*self.args, **self.kwargs)
                except TypeError as exc:
                    raise _Unbindable(str(exc)) from exc
                bound.apply_defaults()
                produced = spec(**bound.arguments)
            if isinstance(produced, str):
                raise TypeError(
                    f"the tags callable of {self.endpoint!r} returned a string, not a list"
                )
            out = list(produced or ())
        else:
            out = list(spec)
        if self.identity is not None:
            out.append(user_tag(self.identity))
        return out

    def compute(self, environ: dict[str, Any], outcome: str) -> Any:
        """Capture versions, run the view, store the response if it may be stored."""
        tags = self.tag_list
        captured = None
        if self.ctx.request.method == "GET":
            if self.versions is not None:  # seen by the read that missed, before the view ran
                captured = (tuple(tags), self.versions)
            else:
                try:
                    captured = self.store.capture(tags)
                except Exception as exc:
                    self.store._error("view version read", exc)
        hooks = getattr(self.ctx, "_after_request_functions", None)
        hooks_before = len(hooks) if hooks is not None else 0
        result = self.call_view()
        if not self.routed and not isinstance(result, BaseResponse):
            # a function another view calls: its own value, stored as a value (not if it
            # registered after_this_request functions: a hit would not run them)
            view_hooks = hooks is not None and len(hooks) > hooks_before
            if captured is not None and not view_hooks and self.storable_call():
                self.keep_value(result, tags, captured[1])
            return result
        resp = self.respond(result)
        if resp.status_code != 200:
            resp.headers["X-Cache"] = outcome
            return resp
        # after_this_request functions registered by the view run on this response only,
        # never on a hit: what they add (a cookie, a header) would be lost on every hit.
        view_hooks = hooks is not None and len(hooks) > hooks_before
        store_it = captured is not None and not view_hooks and self.storable(resp)
        if resp.is_streamed or resp.direct_passthrough:
            resp.headers["X-Cache"] = outcome
            return resp
        body = resp.get_data()
        etag = normalize_etag(resp.headers.get("ETag")) or _etag_of(body)
        resp.headers["ETag"] = etag
        if "Cache-Control" not in resp.headers:
            resp.headers["Cache-Control"] = self.opts.cache_control or (
                "no-cache" if self.opts.shared else "private, no-cache"
            )
        if self.opts.vary:
            for name in self.opts.vary:
                resp.vary.add(name)
        if store_it and captured is not None:
            self.defer_fill(resp, etag, body, tags, captured[1])
        resp.headers["X-Cache"] = outcome
        inm = environ.get("HTTP_IF_NONE_MATCH")
        if inm and self.routed and _etag_matches(inm, etag):
            return self.not_modified(resp.headers.items(), _304_MISS_HEADERS)
        return resp

    def storable(self, resp: Response) -> bool:
        if not self.storable_call():
            return False
        if resp.is_streamed or resp.direct_passthrough or "Set-Cookie" in resp.headers:
            return False
        tokens = _all_cache_control(resp.headers)
        if "no-store" in tokens:
            return False
        if self.opts.shared and "private" in tokens:
            return False
        return self.vary_covered(resp)

    def storable_call(self) -> bool:
        """The checks that do not depend on what the view returned."""
        if self.no_store or self.ctx.request.environ.get(_SKIP_KEY):
            return False
        session = getattr(self.ctx, "_session", None)
        # a modified session: Flask will set the session cookie on this response
        return session is None or not getattr(session, "modified", False)

    def keep_value(self, value: Any, tags: list[str], versions: Any) -> None:
        """Store the value a cached function returned to the view calling it, if the
        codec gives it back identical (type and value); else warn once."""
        payload = returns.encode_value(value)
        if payload is None:
            self.warn_once(
                f"value {self.func_name()}",
                "cached function %r returned a %s, which would not come back from the "
                "cache unchanged (JSON values, dates, times, UUIDs, Decimals and bytes "
                "do; tuples, non-string dict keys and objects do not); not caching it",
                self.func_name(),
                type(value).__name__,
            )
            return
        self.defer_fill(None, None, payload, tags, versions)

    def vary_covered(self, resp: Response) -> bool:
        """The view's own ``Vary`` says which request headers its body depends on: each
        must be in the key (declared with ``vary=``), or one entry would serve every
        variant. ``Cookie`` is covered by the identity on a per-user view. ``*`` never is."""
        if "Vary" not in resp.headers:
            return True
        opts = self.opts
        names = [
            part.strip()
            for line in resp.headers.getlist("Vary")  # every line, not only the first
            for part in line.split(",")
            if part.strip()
        ]
        uncovered = [
            name
            for name in dict.fromkeys(names)
            if name.lower() not in opts.vary_names
            and (opts.shared or name.lower() != "cookie")
        ]
        if not uncovered:
            return True
        self.warn_once(
            "vary",
            "cached view %r answers with Vary: %s, not covered by its key (vary=%r%s); "
            "not storing it: declare the headers with vary=(...)",
            self.endpoint,
            ", ".join(uncovered),
            opts.vary,
            ", shared=True" if opts.shared else "",
        )
        return False

    def warn_once(self, kind: str, msg: str, *args: Any) -> None:
        """Log a refusal to store once per endpoint and kind (it repeats on every miss)."""
        warned = self.views.warned
        mark = (kind, self.endpoint)
        if mark not in warned:
            warned.add(mark)
            log.warning(msg, *args)

    def defer_fill(
        self,
        resp: Response | None,
        etag: str | None,
        body: bytes,
        tags: list[str],
        versions: Any,
    ) -> None:
        """Snapshot the view's own headers and body now (after-request functions of the
        app also run on every hit: what they add must not be stored), store them in
        :meth:`finish` once Flask's after-request processing has produced the final
        response, which may still forbid storing (``no-store`` added by an app hook).
        ``resp`` and ``etag`` are ``None`` for a function's value (``body`` encodes it)."""
        if resp is None:
            headers: list[tuple[str, str]] = []
        else:
            headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in _DROP_HEADERS]
        if any("\n" in k or "\r" in k or "\n" in v or "\r" in v for k, v in headers):
            return
        fills = self.fills or _fills_of(self.ctx)
        if fills.finished:
            # called after request_finished (a stream_with_context generator): the final
            # response is already sent, the view's own response is all there is to check
            if resp is None or self.final_storable(resp):
                self.fill(headers, etag, body, tags, versions)
            return
        if self.key in fills.pending:  # called twice in one request: the first one fills
            return
        self.pending = (headers, etag, body, tags, versions)
        fills.pending[self.key] = self

    def finish(self, final: Response | None) -> None:
        """Store the pending fill if ``final`` (the response the client gets, ``None``
        when it is not known) allows it, then run the releases."""
        pending, self.pending = self.pending, None
        try:
            if pending is not None and final is not None and self.final_storable(final):
                self.fill(*pending)
        finally:
            releases, self.releases = self.releases, []
            for release in releases:
                release()

    def final_storable(self, final: Response) -> bool:
        """The checks only the final response can answer: after-request functions of the
        app or its blueprints may have changed it (they run on hits too, so a cookie they
        set is not a reason to refuse: it is set again on every hit, never stored)."""
        if final.status_code != 200 and final.status_code != 304:
            return False
        tokens = _all_cache_control(final.headers)
        if "no-store" in tokens:
            return False
        opts = self.opts
        if opts.shared and "private" in tokens:
            return False
        vary = _all_vary(final.headers) if "Vary" in final.headers else None
        if vary is not None and "*" in vary:
            return False
        if opts.shared and "cookie" not in opts.vary_names and self.read_session(vary):
            self.warn_once(
                "session",
                "shared cached view %r: the session was read during the request (Vary: "
                "Cookie); not storing it, one user's entry would be served to another: "
                "make the view per-user, or do not read the session on its requests",
                self.endpoint,
            )
            return False
        return True

    def read_session(self, vary: Any) -> bool:
        """Whether this request's response may depend on the session cookie: Flask adds
        ``Vary: Cookie`` when the session was accessed (by the view, or by a hook whose
        result the view may use through ``g``); a session interface that does not is
        caught by ``session.accessed``. The null session (no secret key) holds nothing."""
        if vary is not None and "cookie" in vary:
            return True
        session = getattr(self.ctx, "_session", None)
        return (
            session is not None
            and bool(getattr(session, "accessed", False))
            and not self.app.session_interface.is_null_session(session)
        )

    def fill(
        self,
        headers: list[tuple[str, str]],
        etag: str | None,
        body: bytes,
        tags: list[str],
        versions: Any,
    ) -> None:
        timeout = self.opts.timeout or self.state.settings.ttl
        soft = time.time() + timeout
        value = (  # etag None: a function's value
            returns.pack_value(body, soft) if etag is None else _pack(headers, etag, soft, body)
        )
        try:
            self.store.set(
                self.key,
                value,
                timeout + self.opts.swr,
                tags,
                versions=versions,
                endpoint=self.endpoint,
            )
        except (TypeError, ValueError):
            raise  # a bad tag is a programming error
        except Exception as exc:
            self.store._error("view write", exc)
