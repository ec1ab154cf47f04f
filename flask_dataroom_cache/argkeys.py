"""How a function's argument becomes a key parameter: typed, injective, never a ``repr``.

One encoding for every cached function keyed by its arguments: ``@cache.memoize``
(``memoize/keying.py``) and a ``@cache.cached`` function another view calls
(``views/keying.py`` ``call_params``). :func:`add_param` puts one argument into the
parameters :func:`~flask_dataroom_cache.keys.build_key` escapes:

* ``str`` and ``None`` under the argument's name (``None`` reads ``~``, which an escaped
  string never does); every other type under the name plus a **type marker**
  (``a.int=5`` beside ``a=5``): ``f(5)``, ``f("5")``, ``f(5.0)`` and ``f(True)`` are four
  entries, as they are four calls.
* Scalars: ``str``, ``int``, ``float``, ``bool``, ``Decimal``, ``UUID``, ``date``,
  ``datetime``, ``None`` (and their subclasses, such as enums of ``str`` or ``int``).
* An object (``self`` of a method) or a class (``cls`` of a classmethod) defining
  ``__cache_key__()``: its class name and what that returns.
* **Containers** (:func:`encode_container`): ``list`` (``.list``), ``tuple``
  (``.tuple``), ``dict`` with ``str`` keys (``.dict``, keys sorted), ``set`` and
  ``frozenset`` (``.set``, elements of one type, sorted by their encoding), nested up to
  :data:`MAX_DEPTH`, each element typed as above (``[1, 2]``, ``["1", "2"]`` and
  ``(1, 2)`` are three entries: a list and a tuple are told apart, as the function
  may tell them apart). The encoding is a prefix-free grammar over escaped texts
  (``i:1;i:2``, ``L(s:a;n)``, ``D(a=i:1)``), which escaping makes unambiguous: the
  texts never hold ``:;()=``.

Anything else raises ``TypeError`` naming the function (``where``) and the argument
(``shown``): a set of mixed types, a dict with a non-string key, an object without
``__cache_key__``, a container nested too deep (or holding itself).
"""

from __future__ import annotations

import inspect
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from .keys import _text, escape

__all__ = ["MARKERS", "MAX_DEPTH", "PLAIN", "add_param", "described", "encode_container"]

#: Exact scalar types keyed by their text plus a marker (``str`` and ``None`` need none).
MARKERS: dict[type, str] = {
    bool: ".bool",
    int: ".int",
    float: ".float",
    Decimal: ".dec",
    uuid.UUID: ".uuid",
    datetime: ".dt",
    date: ".date",
}
#: Argument types whose equal values always have the same key text, so a memo of built keys
#: (a dict: equal arguments share a slot) may hold them. Not ``Decimal`` (``1.0`` and
#: ``1.00`` are equal, their texts differ), ``float`` (``0.0`` and ``-0.0``) or ``datetime``
#: (one instant in two time zones): a warm process would answer another text's entry.
PLAIN = frozenset((str, type(None), bool, int, uuid.UUID, date))
#: How deep containers may nest in one argument.
MAX_DEPTH = 16

_CONTAINERS: dict[type, str] = {
    list: ".list",
    tuple: ".tuple",
    dict: ".dict",
    set: ".set",
    frozenset: ".set",
}
#: The element codes inside a container (the marker without its dot, shorter).
_CODES: dict[str, str] = {
    ".bool": "b",
    ".int": "i",
    ".float": "f",
    ".dec": "d",
    ".uuid": "u",
    ".dt": "dt",
    ".date": "date",
    ".obj": "o",
    ".cls": "c",
}
_SUPPORTED = "str, int, float, bool, Decimal, UUID, date, datetime or None"


def add_param(params: dict[str, Any], pname: str, value: Any, where: str, shown: str) -> None:
    """Put ``value`` (the argument ``shown`` of ``where``) into ``params`` under
    ``pname`` plus its type marker; ``TypeError`` for what a key cannot hold."""
    cls = type(value)
    if cls is str or value is None:
        params[pname] = value
        return
    marker = MARKERS.get(cls)
    if marker is None:
        marker, value = scalar_or_object(value, where, shown)
    params[pname + marker] = value


def scalar_or_object(value: Any, where: str, shown: str) -> tuple[str, Any]:
    """``(marker, what the key holds)`` of an argument of no exact scalar type: a
    subclass of one (an enum of ``str``/``int``), a container, an object or a class
    defining ``__cache_key__``."""
    if isinstance(value, str):
        return "", str.__str__(value)
    if isinstance(value, bool):
        return ".bool", bool(value)
    if isinstance(value, int):
        return ".int", int(value)
    if isinstance(value, float):
        return ".float", float(value)
    if isinstance(value, datetime):
        return ".dt", value
    for cls, marker in MARKERS.items():
        if isinstance(value, cls):
            return marker, value
    for cls, marker in _CONTAINERS.items():
        if isinstance(value, cls):
            return marker, _items(value, where, shown, 1)
    if isinstance(value, type):
        return ".cls", _class_key(value, where, shown)
    own = getattr(value, "__cache_key__", None)
    if own is None or not callable(own):
        name = type(value).__qualname__
        raise TypeError(
            f"{where}: argument {shown!r} is a {name} instance, which a cache key cannot "
            f"hold ({_SUPPORTED}, or a list, tuple, dict with str keys or set of them). "
            f"Define {name}.__cache_key__(self) returning what identifies it (e.g. its "
            "primary key), or pass such a value instead"
        )
    return ".obj", described(type(value).__qualname__, own(), where, shown)


def encode_container(value: Any, where: str, shown: str) -> str:
    """The canonical text of a container argument (what :func:`add_param` stores after
    its marker); ``TypeError`` for what it cannot hold."""
    return _items(value, where, shown, 1)


def _element(value: Any, where: str, shown: str, depth: int) -> str:
    """One element of a container: ``code:text``, ``n`` (``None``) or a nested one."""
    cls = type(value)
    if cls is str:
        return "s:" + escape(value)
    if value is None:
        return "n"
    marker = MARKERS.get(cls)
    if marker is None:
        if isinstance(value, list | tuple | dict | set | frozenset):
            wrap = _CONTAINERS[next(c for c in _CONTAINERS if isinstance(value, c))]
            return f"{wrap[1].upper()}({_items(value, where, shown, depth + 1)})"
        marker, value = scalar_or_object(value, where, shown)
        if marker == "":
            return "s:" + escape(value)
        if marker in (".obj", ".cls"):
            return f"{_CODES[marker]}:{escape(value)}"
    return f"{_CODES[marker]}:{_text(value)}"


def _items(value: Any, where: str, shown: str, depth: int) -> str:
    """The elements of a container, ``;``-separated (dict: ``key=element`` by key)."""
    if depth > MAX_DEPTH:
        raise TypeError(
            f"{where}: argument {shown!r} nests containers deeper than {MAX_DEPTH} levels "
            "(or holds itself), which a cache key does not hold"
        )
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise TypeError(
                    f"{where}: argument {shown!r} is a dict with a {type(k).__qualname__} "
                    "key; a cache key holds dicts with str keys only"
                )
        return ";".join(
            f"{escape(k)}={_element(value[k], where, shown, depth)}" for k in sorted(value)
        )
    if isinstance(value, set | frozenset):
        kinds = {type(item) for item in value}
        if len(kinds) > 1:
            names = ", ".join(sorted(k.__qualname__ for k in kinds))
            raise TypeError(
                f"{where}: argument {shown!r} is a set of mixed types ({names}); a cache "
                "key holds sets of one type only (1, 1.0 and True are one set element)"
            )
        return ";".join(sorted(_element(item, where, shown, depth) for item in value))
    return ";".join(_element(item, where, shown, depth) for item in value)


def _class_key(cls: type, where: str, shown: str) -> str:
    """A class (``cls`` of a classmethod): keyed by its ``__cache_key__`` classmethod."""
    static = inspect.getattr_static(cls, "__cache_key__", None)
    if not isinstance(static, classmethod | staticmethod):
        raise TypeError(
            f"{where}: argument {shown!r} is the class {cls.__qualname__}, which a "
            "cache key holds only through a class-level __cache_key__: define "
            f"`@classmethod def __cache_key__(cls)` on {cls.__qualname__} returning what "
            "identifies the class (e.g. cls.__qualname__)"
        )
    return described(cls.__qualname__, cls.__cache_key__(), where, shown)  # type: ignore[attr-defined]


def described(owner: str, result: Any, where: str, shown: str) -> str:
    """``{class}:{type}:{text}`` of what a ``__cache_key__`` returned (a key component)."""
    if result is None:
        kind = "none"
    elif isinstance(result, str):
        kind = "str"
    else:
        kind = next((m[1:] for c, m in MARKERS.items() if isinstance(result, c)), "?")
    try:
        text = _text(result)
    except TypeError:
        raise TypeError(
            f"{where}: {owner}.__cache_key__() for argument {shown!r} returned a "
            f"{type(result).__qualname__}; it must return a {_SUPPORTED}"
        ) from None
    return f"{owner}:{kind}:{text}"
