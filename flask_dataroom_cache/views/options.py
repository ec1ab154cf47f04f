"""The options of one ``@cache.cached(...)``, validated once when the view is decorated.

:class:`Options` turns the decorator's arguments into what the other modules read on every
request: the ``vary`` headers as names, as the lower-case set a response's ``Vary`` is
checked against, and as WSGI environ keys (read straight from the environ when a key is
built); the ``query`` option as ``True``/``False`` or a set of parameter names. A bad value
raises here, at import time of the view, never on a request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from .awaiting import sync_callable

__all__ = ["Options"]

#: An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class Options:
    """The validated arguments of one ``@cache.cached`` (also ``view.__dataroom_cache__``)."""

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
        # a tags or unless callable may be async: awaited where it is called (awaiting)
        self.tags = sync_callable(tags) if callable(tags) else None if tags is None else tuple(tags)
        self.shared = bool(shared)
        names = [part.strip() for h in vary for part in str(h).split(",")]
        for name in names:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"vary: {name!r} is not a header name")
        self.vary = tuple(dict.fromkeys(names))
        #: Response ``Vary`` names the key covers (lower case): the declared ones.
        self.vary_names = frozenset(h.lower() for h in self.vary)
        #: The declared headers as WSGI environ keys, in ``vary`` order (read by keying).
        self.vary_environ = tuple(
            "HTTP_" + h.upper().replace("-", "_")
            if h.lower() not in ("content-type", "content-length")
            else h.upper().replace("-", "_")
            for h in self.vary
        )
        self.unless = sync_callable(unless)
        self.lock = bool(lock)
        #: ``stale_while_revalidate``, in seconds (0: off).
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
        #: TTL of the cross-process locks (None: ``flight.LOCK_TTL``); lock waiters poll
        #: that long.
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
