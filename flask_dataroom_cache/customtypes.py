"""Custom types: the classes one ``DataRoomCache`` caches beyond JSON and the built-ins.

``cache.register_type(cls, encode, decode, *, name=None)`` adds a :class:`CustomType` to the
extension's :class:`Codec` (``cache.codec``), which every app initialised with it hands to
its store. The wire format of a custom value (``{"__drc__": "type", "n": name, "v": ...}``,
the ``T`` flag) belongs to ``serialization.py``; this module owns the registry: which class
is stored under which name, with which two functions, and the rules of registration
(dataclasses and enums need no functions; JSON's own types and the built-in ones cannot be
registered, a subclass of either can, and a subclass of a JSON type must be, enums with a
``str``/``int`` mixin included: JSON would give it back as its parent; one name per class,
one class per name). On a read only the ``decode`` registered for the stored name
ever runs: a stored name this codec does not know is a ``CodecError`` (a miss).
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import Callable
from typing import Any

from .jsonexact import JSON_TYPES as _JSON_TYPES
from .jsonexact import SCALARS as _SCALARS
from .jsonexact import qualname as _qualname
from .serialization import (
    _BUILTIN_TYPES,
    _MARK,
    CodecError,
    _hook,
    decode,
    encode,
)

__all__ = ["Codec", "CustomType"]


@dataclasses.dataclass(frozen=True)
class CustomType:
    """One registered class: the name stored with its values, and its two functions."""

    cls: type
    name: str
    #: ``encode(obj)``: a value the codec can store (JSON data, built-in or registered types).
    encode: Callable[[Any], Any]
    #: ``decode(data)``: the object back from what ``encode`` returned (already decoded).
    decode: Callable[[Any], Any]

    def encode_one(self, obj: Any) -> Any:
        data = self.encode(obj)
        if type(data) is self.cls:
            raise TypeError(
                f"the encode function registered for {_qualname(self.cls)} returned a "
                f"{self.cls.__name__}: it must return JSON-like data (a dict, list, str...)"
            )
        return data


def _dataclass_functions(cls: type) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """``encode``/``decode`` of a dataclass: its ``__init__`` fields, shallow (a nested
    dataclass is encoded by its own registration), and ``cls(**fields)`` back."""
    names = tuple(f.name for f in dataclasses.fields(cls) if f.init)

    def encode_dataclass(obj: Any) -> dict[str, Any]:
        return {name: getattr(obj, name) for name in names}

    def decode_dataclass(data: Any) -> Any:
        if not isinstance(data, dict):
            raise TypeError(f"a {cls.__name__} is stored as a dict, got {type(data).__name__}")
        return cls(**data)

    return encode_dataclass, decode_dataclass


def _enum_functions(cls: type[enum.Enum]) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """``encode``/``decode`` of an enum: its member's value, and ``cls(value)`` back; only
    for values JSON gives back identical (str, int, float, bool, None)."""
    odd = [m.name for m in cls if type(m.value) not in _SCALARS]
    if odd:
        raise TypeError(
            f"register_type({cls.__name__}): the values of {', '.join(odd)} are not "
            "str, int, float, bool or None; give encode and decode"
        )

    def encode_enum(member: Any) -> Any:
        return member.value

    return encode_enum, cls


class Codec:
    """The custom types one ``DataRoomCache`` caches, and the codec through them.

    ``cache.codec`` (filled by ``cache.register_type``); every app initialised with that
    ``DataRoomCache`` uses it. Names are unique in one codec: a second class under a
    taken name raises ``ValueError``; registering the same class under the same name
    again replaces its functions (an app factory may run twice in one process).
    """

    def __init__(self) -> None:
        self._by_class: dict[type, CustomType] = {}
        self._by_name: dict[str, CustomType] = {}
        self._lock = threading.Lock()

    def register(
        self,
        cls: type,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
        *,
        name: str | None = None,
    ) -> CustomType:
        """Register ``cls`` (see ``DataRoomCache.register_type``); returns the entry."""
        if not isinstance(cls, type):
            raise TypeError(f"register_type takes a class, got {cls!r}")
        if cls in _JSON_TYPES:
            raise TypeError(
                f"{_qualname(cls)} is a JSON type: stored as JSON without registration "
                "(only a subclass of one can be registered)"
            )
        if cls in _BUILTIN_TYPES:
            raise TypeError(
                f"{_qualname(cls)} is built in: cached as its own type without registration"
            )
        if encode is None or decode is None:
            defaults = (
                _dataclass_functions(cls)
                if dataclasses.is_dataclass(cls)
                else _enum_functions(cls)
                if issubclass(cls, enum.Enum)
                else None
            )
            if defaults is not None:
                encode = encode or defaults[0]
                decode = decode or defaults[1]
        if encode is None or decode is None:
            raise TypeError(
                f"register_type({cls.__name__}, encode, decode): encode and decode are "
                "required for a class that is neither a dataclass nor an enum"
            )
        if not callable(encode) or not callable(decode):
            raise TypeError(f"encode and decode of {_qualname(cls)} must be callable")
        if name is None:
            name = _qualname(cls)
        if not isinstance(name, str) or not name:
            raise ValueError(f"the type name of {_qualname(cls)} must be a non-empty string")
        entry = CustomType(cls, name, encode, decode)
        with self._lock:
            taken = self._by_name.get(name)
            if taken is not None and taken.cls is not cls:
                raise ValueError(
                    f"type name {name!r} is already registered for {_qualname(taken.cls)}: "
                    f"pass another name= for {_qualname(cls)}"
                )
            previous = self._by_class.get(cls)
            if previous is not None and previous.name != name:
                raise ValueError(
                    f"{_qualname(cls)} is already registered as {previous.name!r}: "
                    "one class is stored under one name"
                )
            self._by_class[cls] = entry
            self._by_name[name] = entry
        return entry

    def name_of(self, cls: type) -> str | None:
        """The stored name of ``cls``, or ``None`` if it is not registered."""
        entry = self._by_class.get(cls)
        return entry.name if entry is not None else None

    def encode(self, value: Any, compress_min_bytes: int = 0, *, zstd: bool | None = None) -> bytes:
        """:func:`encode` with this codec's types."""
        return encode(value, compress_min_bytes, zstd=zstd, codec=self)

    def decode(self, data: bytes) -> Any:
        """:func:`decode` with this codec's types."""
        return decode(data, codec=self)

    def _hook(self, obj: dict[str, Any]) -> Any:
        if obj.get(_MARK) != "type":
            return _hook(obj)
        name = obj.get("n")
        entry = self._by_name.get(name) if isinstance(name, str) else None
        if entry is None:
            raise CodecError(f"a value of type {name!r}, not registered here")
        try:
            return entry.decode(obj["v"])
        except Exception as exc:  # the class changed since the entry was written: a miss
            raise CodecError(f"decoding a {name!r}: {type(exc).__name__}: {exc}") from exc
