"""What identifies a memoized call's entry: its key and its tags.

* **The key** is :func:`~flask_dataroom_cache.keys.build_key` (escaped, injective) over
  the entity ``~memo``, the function's unique name (``module.qualname``, ``#2``... for a
  factory's further functions: :func:`~flask_dataroom_cache.views.keying.unique_name`)
  and its arguments, bound to its signature with their defaults applied
  (``inspect.Signature.bind`` + ``apply_defaults``), so ``f(1, b=2)``, ``f(1, 2)`` and
  ``f(a=1, b=2)`` are one entry. Each argument is one key parameter named after it
  (``*args`` items ``name.0``, ``name.1``...; ``**kwargs`` items ``name.key``), with a
  type marker for anything but a string or ``None`` (``a.int=5``, ``a=5``: ``f(5)`` and
  ``f("5")`` are two entries, as they are two calls): the encoding of ``argkeys.py``,
  shared with the cached functions views call.
* **Values a key can hold**: ``str``, ``int``, ``float``, ``bool``, ``Decimal``, ``UUID``,
  ``date``, ``datetime``, ``None``; lists, tuples, dicts with ``str`` keys and sets of
  one type of them; an object (``self`` of a method) or a class (``cls`` of a
  classmethod) defining ``__cache_key__()``, keyed by its class name and what that
  returns. Anything else raises a ``TypeError`` naming the function and the argument:
  never a ``repr`` holding a memory address.
* **Tags**: the declared ones (a list, or a callable given the call's arguments), the
  function's own tag (:func:`function_tag`, invalidated by ``f.invalidate_all()``) and
  the entry's own tag (:func:`entry_tag`, invalidated by ``f.invalidate(...)``), both in
  the ``~memo`` namespace, which user tags may not use.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..argkeys import PLAIN, add_param
from ..keys import build_key, escape

__all__ = [
    "ENTITY",
    "TAG_NAMESPACE",
    "ArgumentKeys",
    "check_user_tags",
    "entry_tag",
    "function_tag",
]

#: The entity part of every memoized key: ``{prefix}:%7Ememo:{name}:...``.
ENTITY = "~memo"
#: The namespace of the tags the library gives memoized entries (reserved: ``tags.py``).
TAG_NAMESPACE = "~memo:"
#: Bound of one function's memo of built keys (cleared when full).
KEY_MEMO_MAX = 4096

#: Argument types whose key depends on the value alone: calls made only of these are
#: memoised (the same arguments build the same key).
_PLAIN = PLAIN


def function_tag(name: str) -> str:
    """The tag every entry of the function ``name`` carries (``f.invalidate_all()``)."""
    return TAG_NAMESPACE + escape(name)


def entry_tag(prefix: str, key: str) -> str:
    """The tag of one entry (``f.invalidate(...)``): race-free, unlike a delete, against
    a value being computed at the same time (capture before compute). It always holds a
    ``:`` after the namespace, which a :func:`function_tag` never does."""
    return TAG_NAMESPACE + key[len(prefix) + 1 :]


def check_user_tags(where: str, tags: Any) -> list[str]:
    """The declared tags of ``where`` (a memoized function) as a list; the ``~memo``
    namespace is refused."""
    if isinstance(tags, str):
        raise TypeError(f"{where}: tags must be a list of strings, not a single string")
    out = list(tags or ())
    for tag in out:
        if isinstance(tag, str) and tag.startswith(TAG_NAMESPACE):
            raise ValueError(
                f"{where}: tag {tag!r} is in the reserved {TAG_NAMESPACE!r} "
                "namespace (the tags the cache gives memoized entries)"
            )
    return out


class ArgumentKeys:
    """Builds the key of each call of one function (see the module docstring)."""

    __slots__ = ("memo", "name", "signature", "where")

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.name = name
        self.signature = inspect.signature(fn)
        #: For messages: the function as the user wrote it.
        self.where = f"@cache.memoize {getattr(fn, '__qualname__', name)}()"
        #: ``(prefix, args, kwargs, their types) -> key`` for calls of plain values only.
        self.memo: dict[Any, str] = {}

    def key(self, prefix: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key of ``f(*args, **kwargs)``; ``TypeError`` for arguments that do not bind
        to the signature or that a key cannot hold."""
        plain = _PLAIN
        for value in args:
            if type(value) not in plain:
                return self._build(prefix, args, kwargs)
        if kwargs:
            for value in kwargs.values():
                if type(value) not in plain:
                    return self._build(prefix, args, kwargs)
            memo_key: Any = (
                prefix,
                args,
                tuple(kwargs.items()),
                tuple(map(type, args)),  # 1, 1.0 and True are equal keys of a dict
                tuple(map(type, kwargs.values())),
            )
        else:
            memo_key = (prefix, args, tuple(map(type, args)))
        key = self.memo.get(memo_key)
        if key is None:
            key = self._build(prefix, args, kwargs)
            if len(self.memo) >= KEY_MEMO_MAX:
                self.memo.clear()
            self.memo[memo_key] = key
        return key

    def _build(self, prefix: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.where}: {exc}") from None
        bound.apply_defaults()
        params: dict[str, Any] = {}
        parameters = self.signature.parameters
        for pname, value in bound.arguments.items():
            kind = parameters[pname].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                for i, item in enumerate(value):
                    self._add(params, f"{pname}.{i}", item, f"*{pname}[{i}]")
            elif kind is inspect.Parameter.VAR_KEYWORD:
                for kw, item in value.items():
                    # no dot in the item's name: ``name.key`` then its type marker
                    self._add(params, f"{pname}.{escape(kw).replace('.', '%2E')}", item, kw)
            elif value is parameters[pname].default:
                # the function's own default object (a sentinel, a frozen config object):
                # the same for every call that leaves it out, keyed by value if a key can
                # hold it, else by a marker (``name.default``) instead of refusing the call
                try:
                    self._add(params, pname, value, pname)
                except TypeError:
                    params[pname + ".default"] = ""
            else:
                self._add(params, pname, value, pname)
        return build_key(prefix, ENTITY, self.name, params)

    def _add(self, params: dict[str, Any], pname: str, value: Any, shown: str) -> None:
        add_param(params, pname, value, self.where, shown)
