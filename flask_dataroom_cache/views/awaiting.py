"""The async callables a cached view may be given, run from the cache's sync code.

``identity``, ``unless`` and ``tags`` may be ``async def`` functions (or return an
awaitable): the decorator's checks run in the request's thread, outside any event loop
(see ``docs/async.md``), so an awaitable they return is run to completion here, as Flask
runs an async view: ``app.ensure_sync`` (asgiref's ``async_to_sync``, a loop of its own
for this one call). Its result is used, never the coroutine object itself (a coroutine is
truthy: an async ``unless`` used as a value would bypass every request).

Called inside a running loop (a cached function called by an async view runs in that
view's loop thread), asgiref refuses to block the loop's own thread; the awaitable then
runs in a loop of a helper thread, with this context's variables (the request).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from inspect import isawaitable
from typing import Any, TypeVar

from flask import current_app

__all__ = ["resolve", "run_awaitable", "sync_callable"]

F = TypeVar("F", bound=Callable[..., Any])


def run_awaitable(awaitable: Awaitable[Any]) -> Any:
    """Await ``awaitable`` from sync code and return its result."""

    async def wait() -> Any:
        return await awaitable

    if asyncio._get_running_loop() is None:
        return current_app.ensure_sync(wait)()
    ctx = contextvars.copy_context()
    with ThreadPoolExecutor(1, thread_name_prefix="dataroom-cache-await") as pool:
        return pool.submit(ctx.run, asyncio.run, wait()).result()


def resolve(result: Any) -> Any:
    """``result``, or what it gives once awaited when it is awaitable."""
    if isawaitable(result):
        return run_awaitable(result)
    return result


def sync_callable(fn: F | None) -> F | None:
    """``fn`` as a sync callable: an awaitable it returns is awaited (:func:`resolve`)."""
    if fn is None:
        return None

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return resolve(fn(*args, **kwargs))

    return run  # type: ignore[return-value]
