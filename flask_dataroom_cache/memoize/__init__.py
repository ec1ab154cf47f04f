"""``@cache.memoize``: cache any function or method by its arguments, tagged.

``DataRoomCache.memoize`` is the public entry point; :func:`decorator` builds it. A
memoized function is a :class:`Memoized` (a descriptor, so methods bind), with three
methods of its own:

* ``f.invalidate(*args, **kwargs)``: the entry of exactly that call (its arguments
  normalised as for a call) misses from now on; a value being computed for it meanwhile
  is never stored (the entry's own tag is invalidated, not the key deleted).
* ``f.invalidate_all()``: every entry of ``f``, in O(1) (the function's own tag).
* ``f.uncached(*args, **kwargs)``: calls the function itself, cache untouched.

Both invalidations behave as ``cache.invalidate_tags``: sent at once, or at the commit of
this thread's open tracked transaction.

Where each step lives (see ``docs/memoize.md`` for the user guide):

=====================  ==============================================================
``__init__``           this entry point: options, :class:`Memoized`, methods and binding
``keying``             the key of a call, its tags, and what a key can hold
``call``               the control flow of one call: read, hit, stale refresh, miss
=====================  ==============================================================

Methods: ``self`` and ``cls`` are arguments like the others, keyed by their
``__cache_key__()`` (``keying``). ``@cache.memoize`` goes *above* ``@classmethod`` and
``@staticmethod`` (it unwraps them and binds as they would); below them, calls work but
``C.method.invalidate(...)`` of a classmethod does not know ``cls`` on every Python
version.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from ..views.keying import unique_name
from . import call as call_module
from .keying import ArgumentKeys, check_user_tags, entry_tag, function_tag

if TYPE_CHECKING:
    from ..extension import DataRoomCache

__all__ = ["BoundMemoized", "Memoized", "decorator"]

TagsSpec = Iterable[str] | Callable[..., Iterable[str]] | None
P = ParamSpec("P")
R = TypeVar("R")


def decorator(
    ext: DataRoomCache,
    timeout: int | Callable[..., Any] | None = None,
    *,
    tags: TagsSpec = None,
    lock: bool = False,
    stale_while_revalidate: int = 0,
) -> Any:
    """Build ``@cache.memoize(...)`` (also usable bare: ``@cache.memoize``)."""
    if callable(timeout) or isinstance(timeout, classmethod | staticmethod):
        return Memoized(ext, timeout, None, None, False, 0)
    _check_options(timeout, tags, stale_while_revalidate)
    if tags is not None and not callable(tags):
        tags = tuple(check_user_tags("@cache.memoize", tags))

    def decorate(fn: Any) -> Any:
        return Memoized(ext, fn, timeout, tags, lock, stale_while_revalidate)  # type: ignore[arg-type]

    return decorate


def _check_options(timeout: Any, tags: Any, swr: Any) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1
    ):
        raise ValueError(f"timeout must be an integer >= 1 (seconds) or None, got {timeout!r}")
    if isinstance(swr, bool) or not isinstance(swr, int) or swr < 0:
        raise ValueError(f"stale_while_revalidate must be an integer >= 0, got {swr!r}")
    if isinstance(tags, str):
        raise TypeError("tags must be a list of strings or a callable, not a single string")


class Memoized(Generic[P, R]):
    """A memoized function (see the module docstring). ``kind`` is ``"function"`` (a
    method binds ``self``), ``"class"`` (a classmethod: binds the class) or
    ``"static"`` (binds nothing)."""

    def __init__(
        self,
        ext: DataRoomCache,
        fn: Any,
        timeout: int | None,
        tags: TagsSpec,
        lock: bool,
        swr: int,
    ) -> None:
        self.kind = "function"
        if isinstance(fn, classmethod):
            self.kind, fn = "class", fn.__func__
        elif isinstance(fn, staticmethod):
            self.kind, fn = "static", fn.__func__
        if not callable(fn):
            raise TypeError(f"@cache.memoize decorates a function, not {type(fn).__name__}")
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"@cache.memoize on the async def function {fn.__qualname__!r}: not supported "
                "(its coroutine cannot be cached)"
            )
        functools.update_wrapper(self, fn)
        self.ext = ext
        self.fn: Callable[..., Any] = fn
        self.name = unique_name(fn)
        self.keys = ArgumentKeys(fn, self.name)
        self.timeout = timeout
        self.lock = bool(lock)
        self.swr = swr
        self.tag_spec: Callable[..., Iterable[str]] | None = tags if callable(tags) else None
        fixed = [] if callable(tags) else check_user_tags(self.keys.where, tags)
        #: ``tags=[]``: TTL only; otherwise the entry also depends on what the function
        #: reads (automatic dependencies, with ``CACHE_AUTO_TAGS``: docs/auto-tags.md).
        self.ttl_only = tags is not None and not callable(tags) and not fixed
        #: The function's own tag (``invalidate_all``).
        self.function_tag = function_tag(self.name)
        self._fixed = (*fixed, self.function_tag)
        self._warned: set[str] = set()

    # -- calls -------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return call_module.call(self, args, kwargs)  # type: ignore[no-any-return]

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if self.kind == "static":
            return self
        if self.kind == "class":
            return BoundMemoized(self, owner if owner is not None else type(instance))
        return self if instance is None else BoundMemoized(self, instance)

    def tags_of(self, args: tuple[Any, ...], kwargs: dict[str, Any], own: str) -> list[str]:
        """The tags of one call: declared (a list, or the callable's answer for these
        arguments), the function's tag and ``own`` (the entry's tag)."""
        if self.tag_spec is None:
            return [*self._fixed, own]
        produced = check_user_tags(self.keys.where, self.tag_spec(*args, **kwargs))
        return [*produced, *self._fixed, own]

    def first_warning(self, kind: str) -> bool:
        """True the first time ``kind`` is warned for this function."""
        if kind in self._warned:
            return False
        self._warned.add(kind)
        return True

    # -- the three methods ---------------------------------------------------------------
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """The entry of ``f(*args, **kwargs)`` misses from now on (or from the commit of
        this thread's open tracked transaction)."""
        state = call_module.current_state(self)
        prefix = state.settings.key_prefix
        state.store.invalidate((entry_tag(prefix, self.keys.key(prefix, args, kwargs)),))

    def invalidate_all(self) -> None:
        """Every entry of this function misses from now on: one tag, O(1)."""
        call_module.current_state(self).store.invalidate((self.function_tag,))

    def uncached(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function itself; the cache is neither read nor written."""
        return self.fn(*args, **kwargs)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<memoized {self.name}>"


class BoundMemoized:
    """A memoized method bound to ``self`` (or a classmethod to its class): the same
    three methods, with that first argument."""

    __slots__ = ("__func__", "__self__")

    def __init__(self, func: Memoized[..., Any], bound: Any) -> None:
        self.__func__ = func
        self.__self__ = bound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return call_module.call(self.__func__, (self.__self__, *args), kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> None:
        self.__func__.invalidate(self.__self__, *args, **kwargs)

    def invalidate_all(self) -> None:
        self.__func__.invalidate_all()

    def uncached(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__.fn(self.__self__, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__func__, name)

    def __repr__(self) -> str:
        return f"<bound memoized {self.__func__.name} of {self.__self__!r}>"
