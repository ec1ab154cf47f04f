"""Values: round trips to the same types, TypeError naming the type, and no pickle: data
read back from the backend can never run code, and garbage is a miss."""

from __future__ import annotations

import contextlib
import pickle
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

import flask_dataroom_cache.serialization as codec
from flask_dataroom_cache import cache_get, cache_set, get_cache_key, get_or_set
from flask_dataroom_cache.backends.redis.layout import frame
from flask_dataroom_cache.serialization import CodecError, decode, encode
from flask_dataroom_cache.tags import normalize_tags

from .conftest import REDIS_KINDS, primary_of, redis_backend_of

ROUND_TRIPS: list[Any] = [
    None,
    True,
    0,
    -(2**70),
    1.5,
    "",
    "héllo 日本",
    [1, "a", None],
    {"a": {"b": [1, {"c": None}]}},
    datetime(2024, 1, 2, 3, 4, 5, 123456),
    datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    date(2024, 2, 29),
    time(23, 59, 1),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("1.10"),
    Decimal("-0.000001"),
    b"\x00\xffbinary",
    {"created": datetime(2020, 1, 1), "id": uuid.UUID(int=7), "price": Decimal("9.99"),
     "tags": [date(2020, 1, 2), {"deep": [Decimal("1e-3")]}]},
    {"__drc__": "datetime", "v": "2020-01-01"},  # a user dict that looks like our marker
    [{"__drc__": "uuid", "v": "x"}],
    {"text": "x" * 5000, "n": list(range(500))},  # compressed
    b"y" * 5000,
    "lone \ud800 surrogate",
    {"k\udfff": ["\ud83d"]},
]


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=lambda v: type(v).__name__)
def test_codec_round_trip(value: Any) -> None:
    for threshold in (0, 64):
        for zstd in ((False, True) if codec.HAVE_ZSTD else (False,)):
            assert _same(decode(encode(value, threshold, zstd=zstd)), value)


def test_round_trips_through_every_backend(app: Flask) -> None:
    for i, value in enumerate(ROUND_TRIPS):
        key = get_cache_key("value", i)
        assert cache_set(key, value, tags=["v:1"])
        assert _same(cache_get(key, ["v:1"]), value), value
    assert _same(cache_get(get_cache_key("value", 8), ["v:1"]), ROUND_TRIPS[8])
    assert cache_get(get_cache_key("value", 1), ["v:1"]) is True
    # bytearray and tuples come back as bytes and lists (documented JSON caveats).
    ba, tu = get_cache_key("value", "ba"), get_cache_key("value", "tu")
    assert cache_set(ba, bytearray(b"ab")) and cache_get(ba) == b"ab"
    assert cache_set(tu, (1, 2)) and cache_get(tu) == [1, 2]


class Custom:
    pass


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(Custom(), "Custom"), ({1, 2}, "set"), ({"a": [object()]}, "object"),
     ([complex(1, 2)], "complex"), (frozenset(), "frozenset"), ({"d": timedelta(1)}, "timedelta")],
)
def test_unserialisable_value_raises_type_error_naming_the_type(
    app: Flask, value: Any, type_name: str
) -> None:
    with pytest.raises(TypeError, match=type_name):
        cache_set("bad", value)
    with pytest.raises(TypeError, match=type_name):
        get_or_set("bad2", lambda: value)
    assert cache_get("bad") is None


def test_no_pickle_anywhere() -> None:
    import flask_dataroom_cache

    root = Path(flask_dataroom_cache.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text and "pickle.loads" not in text, path


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> Any:
        import os

        return (os.mkdir, (str(self.target),))


def _garbage(target: Path) -> list[bytes]:
    exploit = pickle.dumps(_Exploit(target))
    return [
        exploit,
        b"J" + exploit,
        b"X" + exploit,
        b"X" + b'{"__drc__":"pickle","v":"' + exploit.hex().encode() + b'"}',
        b'X{"__drc__":"dict","v":[[1]]}',
        b'X{"__drc__":"dict","v":[[[1],2]]}',
        b'X{"__drc__":"dict","v":5}',
        b'X{"__drc__":"decimal","v":[1]}',
        b'X{"__drc__":"datetime","v":"not a date"}',
        b'X{"__drc__":"bytes","v":"%%%"}',
        b"J" + b"[" * 100_000 + b"]" * 100_000,
        b"X" + b"[" * 100_000 + b"]" * 100_000,
        b"J\xff\xfe",
        b"jnot zlib",
        b"zJnot zstd",
        b"z",
        b"",
        b"\x80\x04",
        b"Q whatever",
    ]


def test_decoding_garbage_raises_codec_error_only(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    for data in _garbage(target):
        with pytest.raises(CodecError):
            decode(data)
    assert not target.exists()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_decode_never_raises_anything_but_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(data)


def test_crafted_payload_is_a_miss_and_runs_nothing(
    app: Flask, cache_kind: str, tmp_path: Path
) -> None:
    """Whatever sits in the backend under a key, reading it is a miss (never an exception,
    never code execution), the bad entry is dropped, and the key can be filled again."""
    target = tmp_path / "pwned"
    tags = ["file:1"]
    norm = normalize_tags(tags)
    backend = primary_of(app)
    versions = backend.versions(norm)
    raw_entries: list[bytes] = [frame(norm, versions, g) for g in _garbage(target)]
    if cache_kind in REDIS_KINDS:
        raw_entries += [
            b"",
            b"hello",
            pickle.dumps(_Exploit(target)),
            b"x\nfile:1\n",
            b"2\n~epoch\n",
            b"-1\nfoo",
            b"3\na\nb\n",
            b"1\n~epoch\n\n",  # an empty token that matches nothing
        ]
    for i, raw in enumerate(raw_entries):
        key = get_cache_key("crafted", i)
        if cache_kind in REDIS_KINDS:
            redis_backend_of(app).client.set(key, raw, ex=60)
        else:
            assert backend.set(key, raw[len(frame(norm, versions, b"")) :], 60, norm, versions)
        assert cache_get(key, tags) is None, (i, raw[:40])
        assert get_or_set(key, lambda: "fresh", tags=tags) == "fresh"
        assert cache_get(key, tags) == "fresh", (i, raw[:40])
    assert not target.exists()


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _canon(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True) + repr(_types(value))


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


@settings(max_examples=300, deadline=None)
@given(_json)
def test_fast_decoder_reads_exactly_what_the_stdlib_would(
    value: Any,
) -> None:
    """With or without orjson, every JSON value round-trips to the same value and types
    (big integers stay integers, NaN and infinities survive)."""
    import json

    data = encode(value)
    assert _canon(decode(data)) == _canon(json.loads(json.dumps(value)))
    if codec.HAVE_ORJSON:
        saved = codec._orjson
        codec._orjson = None  # type: ignore[assignment]
        try:
            assert _canon(decode(data)) == _canon(json.loads(json.dumps(value)))
        finally:
            codec._orjson = saved
