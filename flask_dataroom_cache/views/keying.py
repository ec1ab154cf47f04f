"""What identifies a cached view's entry: its key and its tags.

* **A route's own call**: :func:`route_key` is :func:`~flask_dataroom_cache.keys.build_key`
  (what ``get_cache_key`` uses, injective) over the endpoint, the URL values the route
  matched, the normalised query string (``query=``), the ``vary`` headers, the identity
  (per-user views only), the host and the mount point (``SCRIPT_NAME``). Built keys are
  memoised per app (``ViewState.key_memo``, bounded, cleared when full) by everything that
  goes into them: a hit builds no key.
* **A cached function another view calls** (:func:`called_by_another_view`): the route's
  arguments do not identify its result, its own do: the key adds the function's unique
  name (:func:`unique_name`, fixed at decoration time) and the arguments of this call
  (:func:`call_params`, typed by ``argkeys.py`` as ``@cache.memoize`` types them), and
  its tags come from its own arguments, by name.
* **Tags** (:func:`entry_tags`): the declared ones (a list, or a callable given the view
  arguments), plus the user's tag on a per-user view.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..argkeys import add_param
from ..keys import build_key, escape
from ..tags import user_tag
from .options import Options

if TYPE_CHECKING:
    from flask import Flask, Request

__all__ = [
    "KEY_MEMO_MAX",
    "Unkeyable",
    "called_by_another_view",
    "entry_tags",
    "function_entry",
    "query_covers",
    "route_key",
    "unique_name",
]

#: Bound of the per-app memo of built keys (cleared when full).
KEY_MEMO_MAX = 4096
#: The entity part of every view key: ``{prefix}:~view:{endpoint}:...``.
_ENTITY = "~view"


class Unkeyable(Exception):
    """No key, or no tags, can be built for this call (a value a key cannot hold, call
    arguments that do not bind to the function's signature): it is not cached."""


# -- keys -------------------------------------------------------------------------------------
def route_key(
    memo: dict[Any, str],
    prefix: str,
    endpoint: str | None,
    opts: Options,
    request: Request,
    view_args: Mapping[str, Any],
    identity: str | None,
) -> str:
    """The key of a route's own call; memoised in ``memo`` (``build_key`` is
    deterministic, the memo is keyed by everything that goes into it)."""
    environ = request.environ
    try:
        memo_key = (
            endpoint,
            tuple(view_args.items()),
            tuple(map(type, view_args.values())),  # 1, 1.0 and True are equal keys
            environ.get("QUERY_STRING") if opts.query else None,
            tuple(map(environ.get, opts.vary_environ)) if opts.vary_environ else None,
            identity,
            opts.query if opts.query is not True else None,
            environ.get("HTTP_HOST") or environ.get("SERVER_NAME"),
            environ.get("SCRIPT_NAME"),
        )
        key = memo.get(memo_key)
    except TypeError:  # an unhashable view argument
        return _entry_key(prefix, endpoint, opts, request, view_args, identity)
    if key is None:
        key = _entry_key(prefix, endpoint, opts, request, view_args, identity)
        if len(memo) >= KEY_MEMO_MAX:
            memo.clear()
        memo[memo_key] = key
    return key


def function_entry(
    prefix: str,
    endpoint: str | None,
    opts: Options,
    request: Request,
    view_args: Mapping[str, Any],
    identity: str | None,
    name: str,
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[str, list[str]]:
    """The key and tags of a cached function another view calls: the route's (what the
    function may read from ``g`` or ``request``) plus its own ``name`` and arguments."""
    call = call_params(name, args, kwargs)
    key = _entry_key(prefix, endpoint, opts, request, view_args, identity, call)
    return key, entry_tags(opts, endpoint, identity, None, (function, args, kwargs))


def _entry_key(
    prefix: str,
    endpoint: str | None,
    opts: Options,
    request: Request,
    view_args: Mapping[str, Any],
    identity: str | None,
    call: dict[str, Any] | None = None,
) -> str:
    """The key of an entry (``call``: :func:`call_params` of a cached function another
    view calls); :class:`Unkeyable` for a value a key cannot hold."""
    environ = request.environ
    params: dict[str, Any] = {}
    for name, val in view_args.items():
        params[name] = val if isinstance(val, str | int) else str(val)
    if call:
        params.update(call)  # typed and checked by call_params
    query = opts.query
    if query and environ.get("QUERY_STRING"):
        items = request.args.items(multi=True)
        if query is not True:
            items = (kv for kv in items if kv[0] in query)  # type: ignore[operator]
        pairs = sorted(items, key=lambda kv: kv[0])  # stable: repeated names keep order
        if pairs:
            params["~q"] = urlencode(pairs)
    for i, env_name in enumerate(opts.vary_environ):
        params[f"~v{i}"] = environ.get(env_name)
    if identity is not None:
        params["~u"] = identity
    # the host and mount point: one app serving several tenants by hostname, or
    # mounted under several prefixes, answers differently for the same path
    params["~h"] = environ.get("HTTP_HOST") or environ.get("SERVER_NAME")
    if environ.get("SCRIPT_NAME"):
        params["~s"] = environ["SCRIPT_NAME"]
    try:
        return build_key(prefix, _ENTITY, endpoint, params)
    except TypeError as exc:  # a value a key cannot hold
        raise Unkeyable(str(exc)) from exc


def call_params(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Key parameters of a cached function another view calls: its unique name and the
    arguments of this call, typed as ``@cache.memoize`` types them (``argkeys.py``:
    ``f(5)`` and ``f("5")`` are two entries); :class:`Unkeyable` for a value a key
    cannot hold."""
    params: dict[str, Any] = {"~fn": name}
    where = f"the cached function {name}()"
    try:
        for i, value in enumerate(args):
            add_param(params, f"~a{i}", value, where, f"#{i}")
        for key, value in kwargs.items():
            # no dot in the keyword: ``~k.name`` then its type marker
            add_param(params, f"~k.{escape(key).replace('.', '%2E')}", value, where, key)
    except TypeError as exc:
        raise Unkeyable(str(exc)) from exc
    return params


def query_covers(outer: bool | frozenset[str], inner: bool | frozenset[str]) -> bool:
    """True if a key built with ``outer``'s query option holds every query parameter one
    built with ``inner``'s would."""
    if not inner or outer is True:
        return True
    if inner is True or outer is False:
        return False
    return inner <= outer


# -- which call this is ------------------------------------------------------------------
def called_by_another_view(
    app: Flask, endpoint: str | None, method: str, wrapper: Callable[..., Any]
) -> bool:
    """True when the cached function ``wrapper`` is not the request's route view (another
    view calls it): the route's arguments do not identify its result, its own do."""
    view = app.view_functions.get(endpoint) if endpoint is not None else None
    if _leads_to(view, wrapper):  # also a View whose ``decorators`` hold the cache
        return False
    view_class = getattr(view, "view_class", None)
    if view_class is not None:  # a View's dispatch_request, a MethodView's method
        if _leads_to(getattr(view_class, "dispatch_request", None), wrapper):
            return False
        method = method.lower()
        found = getattr(view_class, method, None)
        if found is None and method == "head":
            found = getattr(view_class, "get", None)
        return not _leads_to(found, wrapper)
    return True


def _leads_to(view: Any, wrapper: Any) -> bool:
    """True if ``view`` is ``wrapper`` or wraps it through ``__wrapped__`` (decorators
    applied above ``@cache.cached`` with ``functools.wraps``). A closure is no evidence:
    a view defined in a factory closes over the cached functions it calls."""
    for _ in range(8):
        if view is None or view is wrapper:
            break
        view = getattr(view, "__wrapped__", None)
    return view is wrapper and view is not None


_NAMES: dict[str, int] = {}
_NAMES_LOCK = threading.Lock()


def unique_name(view: Any) -> str:
    """``module.qualname`` of a decorated function, with ``#2``, ``#3``... for further
    functions of the same name (a factory's): part of the key of a cached function called
    by another view. Decoration order is import order, so every process agrees."""
    base = f"{getattr(view, '__module__', '')}.{getattr(view, '__qualname__', '?')}"
    with _NAMES_LOCK:
        seen = _NAMES.get(base, 0) + 1
        _NAMES[base] = seen
    return base if seen == 1 else f"{base}#{seen}"


# -- tags -------------------------------------------------------------------------------
def entry_tags(
    opts: Options,
    endpoint: str | None,
    identity: str | None,
    view_args: Mapping[str, Any] | None,
    call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = None,
) -> list[str]:
    """The entry's tags: the declared ones, plus the user's tag on a per-user view. A
    tags callable gets the route's view arguments, or, for a cached function another
    view calls (``call``: the function and this call's arguments), its own arguments by
    name (:class:`Unkeyable` when they do not bind to its signature)."""
    spec = opts.tags
    if spec is None:
        out: list[str] = []
    elif callable(spec):
        if call is None:
            produced = spec(**(view_args or {}))
        else:
            view, args, kwargs = call
            try:
                bound = inspect.signature(view).bind(*args, **kwargs)
            except TypeError as exc:
                raise Unkeyable(str(exc)) from exc
            bound.apply_defaults()
            produced = spec(**bound.arguments)
        if isinstance(produced, str):
            raise TypeError(f"the tags callable of {endpoint!r} returned a string, not a list")
        out = list(produced or ())
    else:
        out = list(spec)
    if identity is not None:
        out.append(user_tag(identity))
    return out
