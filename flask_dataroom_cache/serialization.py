"""The value codec: JSON plus a few tagged types, never pickle.

Cache contents may come from a Redis that others can write to, so decoding must never be
able to run code. Values are JSON; ``datetime``, ``date``, ``time``, ``UUID``, ``Decimal``
and ``bytes`` round-trip to their own types through small marker objects. ``bytes``
values (rendered HTTP bodies) skip JSON entirely.

Wire format: one flag byte, then the body.

* ``J`` plain JSON that any correct decoder reads identically: no marker objects, no
  ``NaN``/``Infinity``, no integer of 19+ digits. Decoded with ``orjson`` when it is
  importable (``pip install flask-dataroom-cache[fast]``: 2-3x faster than the stdlib on
  a typical listing, the main cost of a hit), else with the stdlib without an object hook.
* ``X`` JSON the stdlib must decode: marker objects (decoded with the hook), or numbers
  ``orjson`` would read differently (big integers become floats there, NaN is refused)
* ``T`` like ``X``, holding registered custom types too: only these entries look up a
  :class:`Codec`, so the other flags decode exactly as they did before custom types
* ``B`` raw bytes
* lower-case ``j``/``x``/``t``/``b``: the same, zlib-compressed (values above the threshold)
* ``z`` + one of ``J``/``X``/``T``/``B``: the same, zstd-compressed; written instead of zlib when
  the ``zstandard`` module is importable (``pip install flask-dataroom-cache[zstd]``).
  Readers accept both, so entries written before or by processes without zstd keep
  reading back; a ``z`` entry read where zstd is missing is a :class:`CodecError` (a miss).

Custom types (:class:`~.customtypes.Codec`, ``cache.register_type``; the registry lives in
``customtypes.py``): a class registered with an
``encode`` function (to a value this codec can store) and a ``decode`` function (back) is
stored as ``{"__drc__": "type", "n": name, "v": encode(obj)}`` and rebuilt by the
``decode`` registered for ``name``; nothing else ever runs on a read. The registry is a
:class:`Codec`, one per ``DataRoomCache``, handed to each app's store (``CacheStore.codec``);
:func:`encode` / :func:`decode` use the one given as ``codec`` (none: no custom types). It
is consulted only for a value holding a type JSON does not know, and to decode a ``T``
entry: other values cost what they did.
An unregistered class raises ``TypeError`` at encode time; a stored name the codec does
not know (written by another version of the app), or a ``decode`` that raises, is a
:class:`CodecError`, which the store treats as a miss.

JSON's own types are stored as JSON only when exact: an instance of a *subclass* of one
(an enum with a ``str`` or ``int`` mixin, ``IntEnum``, ``StrEnum``, a ``str`` subclass
such as ``markupsafe.Markup``, a ``float`` subclass such as ``numpy.float64``, an
``OrderedDict``, a namedtuple; as a value or as a dict key) would come back as its plain
parent, silently: it is stored through its registration (``cache.register_type``, exact
class) or refused with a ``TypeError`` naming it. ``json.dumps`` accepts such subclasses,
so a value it encoded is checked after (``jsonexact.py``).

Caveats, as with any JSON: tuples come back as lists, and non-string dict keys as strings.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import re
import threading
import uuid
import zlib
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .jsonexact import JSON_TYPES as _JSON_TYPES
from .jsonexact import SCALARS as _SCALARS
from .jsonexact import exact_json as _exact_json
from .jsonexact import key_of as _key_of
from .jsonexact import qualname as _qualname

if TYPE_CHECKING:
    from .customtypes import Codec

__all__ = ["HAVE_ORJSON", "HAVE_ZSTD", "CodecError", "decode", "encode"]

try:  # optional: faster and smaller than zlib at its fastest level
    import zstandard as _zstd

    HAVE_ZSTD = True
except ImportError:  # pragma: no cover - depends on the installed extras
    _zstd = None  # type: ignore[assignment]
    HAVE_ZSTD = False

#: zstandard's compressor and decompressor objects must not be used by two threads at
#: once (they keep a native context and release the GIL), so each thread gets its own.
_zstd_local = threading.local()


def _zstd_c() -> Any:
    c = getattr(_zstd_local, "c", None)
    if c is None:
        c = _zstd_local.c = _zstd.ZstdCompressor(level=3)
    return c


def _zstd_d() -> Any:
    d = getattr(_zstd_local, "d", None)
    if d is None:
        d = _zstd_local.d = _zstd.ZstdDecompressor()
    return d


try:  # optional: the fast JSON decoder of the hit path
    import orjson as _orjson

    HAVE_ORJSON = True
except ImportError:  # pragma: no cover - depends on the installed extras
    _orjson = None  # type: ignore[assignment]
    HAVE_ORJSON = False

_MARK = "__drc__"
#: JSON text orjson would decode differently from the stdlib: 19+ digit integers (orjson
#: turns integers beyond 64 bits into floats) and NaN/Infinity (orjson refuses them).
#: Matches inside strings too; a false positive only takes the (correct) stdlib path.
_STDLIB_ONLY = re.compile(r"\d{19}|NaN|Infinity")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=True).encode
_dumps_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=True).encode
_loads = json.loads
_decode_json = json.JSONDecoder().decode


_ZstdError: type[Exception] = _zstd.ZstdError if _zstd is not None else ValueError


class CodecError(ValueError):
    """Stored bytes could not be decoded (corrupt or foreign data): treated as a miss."""


class _NeedsMarkers(Exception):
    pass


def _refuse(obj: Any) -> Any:
    # Anything JSON does not hold takes the marked path (:func:`_mark`), which knows the
    # built-in types and the registered ones, and raises the TypeError for the others.
    raise _NeedsMarkers


#: Types stored as marker objects without registration.
_BUILTIN_TYPES: tuple[type, ...] = (datetime, date, time, uuid.UUID, Decimal, bytes, bytearray)
#: How a custom type's marker starts in the encoded JSON (compact separators, key first):
#: an encoding holding it is flagged ``T``. JSON escapes quotes inside strings, so no
#: string value can contain it.
_TYPE_MARK = b'{"' + _MARK.encode("ascii") + b'":"type"'


def _unknown_type(obj: Any) -> TypeError:
    cls = type(obj)
    how = (
        f"cache.register_type({cls.__name__})"
        if dataclasses.is_dataclass(cls) or isinstance(obj, enum.Enum)
        else f"cache.register_type({cls.__name__}, encode, decode)"
    )
    parent = next((t for t in _JSON_TYPES if isinstance(obj, t)), None)
    why = (
        "not JSON-serialisable"
        if parent is None
        else f"a subclass of {parent.__name__}, which JSON would give back as a plain "
        f"{parent.__name__}"
    )
    return TypeError(
        f"cannot cache a value of type {_qualname(cls)}: {why}, and not registered; "
        f"register it with {how} (see docs/api.md, 'Custom types')"
    )


def _mark(obj: Any, codec: Codec | None) -> Any:
    """Replace special types by marker dicts; escape user dicts that use the marker key.
    JSON's types by their exact class only: a subclass is a registered type or an error."""
    kind = type(obj)
    if kind is dict:
        if _MARK in obj:
            # A user dict that uses our marker key is stored as a list of pairs: the
            # object hook runs bottom-up and must never see it as a dict.
            return {
                _MARK: "dict",
                "v": [[_key_of(k), _mark(v, codec)] for k, v in obj.items()],
            }
        return {_key_of(k): _mark(v, codec) for k, v in obj.items()}
    if kind is list or kind is tuple:
        return [_mark(v, codec) for v in obj]
    if kind in _SCALARS:
        return obj
    if codec is not None:
        custom = codec._by_class.get(type(obj))
        if custom is not None:
            # The encoded form is marked in turn: it may hold other registered types.
            return {_MARK: "type", "n": custom.name, "v": _mark(custom.encode_one(obj), codec)}
    if isinstance(obj, datetime):
        return {_MARK: "datetime", "v": obj.isoformat()}
    if isinstance(obj, date):
        return {_MARK: "date", "v": obj.isoformat()}
    if isinstance(obj, time):
        return {_MARK: "time", "v": obj.isoformat()}
    if isinstance(obj, uuid.UUID):
        return {_MARK: "uuid", "v": str(obj)}
    if isinstance(obj, Decimal):
        return {_MARK: "decimal", "v": str(obj)}
    if isinstance(obj, bytes | bytearray):
        return {_MARK: "bytes", "v": base64.b64encode(bytes(obj)).decode("ascii")}
    raise _unknown_type(obj)  # a JSON subclass too: never flattened to its parent


_UNMARK: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": Decimal,
    "bytes": lambda v: base64.b64decode(v.encode("ascii"), validate=True),
    "dict": lambda v: {pair[0]: pair[1] for pair in v},
}


def _hook(obj: dict[str, Any]) -> Any:
    kind = obj.get(_MARK)
    if kind is None:
        return obj
    try:
        return _UNMARK[kind](obj["v"])
    except (LookupError, TypeError, ValueError) as exc:
        if kind == "type":  # a custom type, and no codec here (see Codec._hook)
            raise CodecError(f"a value of type {obj.get('n')!r}, not registered here") from exc
        raise CodecError(f"bad marker {kind!r}") from exc


def encode(
    value: Any,
    compress_min_bytes: int = 0,
    *,
    zstd: bool | None = None,
    codec: Codec | None = None,
) -> bytes:
    """Serialise ``value``; raises ``TypeError`` naming an unsupported type.

    ``zstd`` picks the compressor for bodies above ``compress_min_bytes``: default zstd
    when importable, else zlib (``zstd=False`` forces zlib, e.g. for a mixed fleet).
    ``codec`` holds the custom types (``None``: none; a custom type raises ``TypeError``).
    """
    if isinstance(value, bytes | bytearray):
        flag, body = b"B", bytes(value)
    else:
        try:
            flag, body = _encode_json(value, codec)
        except UnicodeEncodeError:
            # A str with a lone surrogate has no UTF-8 form: write it \u-escaped (ASCII),
            # which the stdlib decoder (the 'X' path) turns back into the same str.
            marked = _mark(value, codec)
            body = _dumps_ascii(marked).encode("ascii")
            flag = b"T" if _TYPE_MARK in body else b"X"
    if compress_min_bytes and len(body) >= compress_min_bytes:
        if HAVE_ZSTD if zstd is None else zstd:
            if not HAVE_ZSTD:
                raise RuntimeError("zstd requested but the zstandard module is not installed")
            packed: bytes = _zstd_c().compress(body)
            if len(packed) + 1 < len(body):
                return b"z" + flag + packed
            return flag + body
        packed = zlib.compress(body, 1)
        if len(packed) < len(body):
            return flag.lower() + packed
    return flag + body


def _encode_json(value: Any, codec: Codec | None) -> tuple[bytes, bytes]:
    try:
        text = _dumps_checked(value)
    except _NeedsMarkers:
        marked = _mark(value, codec)
        body = _dumps(marked).encode("utf-8")
        return (b"T" if _TYPE_MARK in body else b"X"), body
    if _STDLIB_ONLY.search(text):
        return b"X", text.encode("utf-8")
    return b"J", text.encode("utf-8")


def _dumps_checked(value: Any) -> str:
    if isinstance(value, dict) and _MARK in value:
        raise _NeedsMarkers  # a plain dict using our marker key must be escaped
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_refuse)
    if _MARK in text:
        raise _NeedsMarkers  # a nested dict may use the marker key: take the careful path
    if not _exact_json(value):
        raise _NeedsMarkers  # a subclass of a JSON type: registered, or a TypeError
    return text


#: Decompressed ``bytes`` values (rendered view bodies) by their stored form: a pure
#: function's memo (the same compressed bytes always inflate to the same body, whoever
#: wrote them), so a hit on a hot entry costs hashing its *compressed* form (a few KB)
#: instead of inflating it. Only ``bytes`` values (immutable: every caller may share
#: them); only small compressed forms (hashing costs about 0.2 ns a byte, inflating about
#: 0.3 ns per *output* byte); bounded by the inflated bytes it holds, cleared when full.
_INFLATED: dict[bytes, bytes] = {}
_INFLATED_MAX_BYTES = 16 * 1024 * 1024
_INFLATED_MAX_INPUT = 16 * 1024
_INFLATED_MAX_BODY = 1024 * 1024
_inflated_size = 0
_inflated_lock = threading.Lock()


def _inflate_bytes(data: bytes) -> bytes | None:
    """The body of a compressed ``B`` payload (``zB...`` or ``b...``) through the memo;
    ``None`` for anything else (the caller's general path handles it)."""
    global _inflated_size
    if len(data) > _INFLATED_MAX_INPUT:
        return None
    body = _INFLATED.get(data)
    if body is not None:
        return body
    if data[0:2] == b"zB":
        if not HAVE_ZSTD:
            return None
        body = _zstd_d().decompress(data[2:])
    elif data[0:1] == b"b":
        body = zlib.decompress(data[1:])
    else:
        return None
    if len(body) <= _INFLATED_MAX_BODY:
        with _inflated_lock:
            if _inflated_size + len(body) > _INFLATED_MAX_BYTES:
                _INFLATED.clear()
                _inflated_size = 0
            if data not in _INFLATED:
                _INFLATED[data] = body
                _inflated_size += len(body)
    return body


def decode(data: bytes, *, codec: Codec | None = None) -> Any:
    """Inverse of :func:`encode`; raises :class:`CodecError` on anything it did not write.

    Custom types are rebuilt by ``codec`` (only a ``T`` entry holds them); a type name it
    does not know, or no ``codec``, is a :class:`CodecError`.
    """
    if not data:
        raise CodecError("empty payload")
    flag = data[0:1]
    try:
        if flag == b"J":  # the common hit: plain JSON, uncompressed
            if _orjson is not None:
                return _orjson.loads(data[1:])
            return _decode_json(data[1:].decode("utf-8"))
        if flag == b"z" or flag == b"b":
            inflated = _inflate_bytes(data)
            if inflated is not None:
                return inflated
        if flag == b"z":
            if not HAVE_ZSTD:
                raise CodecError("zstd-compressed entry, but zstandard is not installed")
            flag, body = data[1:2], _zstd_d().decompress(data[2:])
        elif flag in (b"j", b"x", b"b", b"t"):
            body = zlib.decompress(data[1:])
            flag = flag.upper()
        else:
            body = data[1:]
        if flag == b"B":
            return body
        if flag == b"J":
            if _orjson is not None:
                return _orjson.loads(body)
            # str, not bytes: json.loads would sniff the encoding of bytes on every call.
            return _decode_json(body.decode("utf-8"))
        if flag == b"X":
            return _loads(body, object_hook=_hook)
        if flag == b"T":
            found = codec
            return _loads(body, object_hook=found._hook if found is not None else _hook)
    except (
        ValueError,  # bad JSON, UnicodeDecodeError, bad marker values (CodecError too)
        LookupError,  # IndexError/KeyError from a malformed marker
        TypeError,  # unhashable or wrongly typed marker contents
        RecursionError,  # absurdly deep JSON
        zlib.error,
        _ZstdError,
    ) as exc:
        raise CodecError(f"{type(exc).__name__}: {exc}") from exc
    raise CodecError(f"unknown payload flag {flag!r}")
