"""Whose entry a per-user cached view reads: the identity of the request.

The identity function is, in order: the app's own (``CacheState.identity``), the one
registered with ``@cache.identity``, else Flask-Login's ``current_user`` when the app uses
Flask-Login. It returns the user's id (``str``, ``int`` or ``UUID``), or ``None`` (or
``""``/``False``) for an anonymous request, which bypasses the cache: an anonymous reader
is never a shared "user". It may be an ``async def`` function (awaited: ``awaiting``).
A per-user view with no identity function at all is an error
(:class:`MissingIdentityError`), not a silently shared entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from inspect import isawaitable
from typing import Any

from flask import current_app

from ..state import CacheState
from .awaiting import run_awaitable

__all__ = ["MissingIdentityError", "identity_function", "request_identity"]


class MissingIdentityError(RuntimeError):
    """A per-user cached view ran with no identity provider registered."""


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


def identity_function(state: CacheState) -> Callable[[], Any] | None:
    """The identity function of ``state``'s app, or ``None`` when there is none."""
    fn = state.identity
    if fn is None:
        fn = state.extension._identity_fn
    if fn is None:
        fn = _flask_login_identity()
    return fn


def request_identity(state: CacheState, endpoint: str | None) -> str | None:
    """The identity of this request as a string, or ``None`` when anonymous. Raises
    :class:`MissingIdentityError` without an identity function, and ``TypeError`` when
    it returns something that is not an id."""
    fn = identity_function(state)
    if fn is None:
        raise MissingIdentityError(
            f"view {endpoint!r} is cached per user (the default) but no identity "
            "provider is registered: decorate a function returning the user id with "
            "@cache.identity, install Flask-Login, or declare the view "
            "@cache.cached(shared=True) if its response is the same for everyone"
        )
    ident = fn()
    if type(ident) is not str and isawaitable(ident):  # an async identity function
        ident = run_awaitable(ident)
    if ident is None or ident == "" or ident is False:
        return None
    if isinstance(ident, bool) or not isinstance(ident, str | int | uuid.UUID):
        raise TypeError(
            f"the identity provider returned {type(ident).__name__} {ident!r}: return "
            "the user's id (str, int or UUID), or None for an anonymous request"
        )
    return str(ident)
