"""The memo of inflated ``bytes`` payloads: a pure function's cache, never a stale one."""

from __future__ import annotations

import os

import pytest

from flask_dataroom_cache import serialization as ser
from flask_dataroom_cache.serialization import CodecError, decode, encode


@pytest.mark.parametrize("zstd", [True, False] if ser.HAVE_ZSTD else [False])
def test_compressed_bytes_decode_through_the_memo(zstd: bool) -> None:
    body = b'{"items":[' + b'{"id":1,"name":"report.pdf"},' * 500 + b"]}"
    payload = encode(body, 1024, zstd=zstd)
    assert payload[:2] == b"zB" if zstd else payload[:1] == b"b"
    first = decode(payload)
    assert first == body
    assert bytes(payload) in ser._INFLATED
    again = decode(bytes(bytearray(payload)))  # an equal, distinct object
    assert again == body
    # another body never answers through the memo
    other = body.replace(b"report", b"ledger")
    assert decode(encode(other, 1024, zstd=zstd)) == other


def test_json_values_are_not_memoised() -> None:
    value = {"items": ["x" * 50] * 100}
    payload = encode(value, 1024)
    a, b = decode(payload), decode(payload)
    assert a == b == value and a is not b  # mutable values are never shared


def test_corrupt_compressed_payloads_still_fail() -> None:
    body = os.urandom(16) * 200
    payload = encode(body, 1024)
    broken = payload[:-8] + b"\x00" * 8
    with pytest.raises(CodecError):
        decode(broken)
    assert broken not in ser._INFLATED


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ser, "_INFLATED_MAX_BYTES", 50_000)
    monkeypatch.setattr(ser, "_INFLATED", {})
    monkeypatch.setattr(ser, "_inflated_size", 0)
    for i in range(20):
        body = (b"%05d" % i) * 4000
        assert decode(encode(body, 1024)) == body
        assert ser._inflated_size <= 50_000
        assert sum(map(len, ser._INFLATED.values())) == ser._inflated_size
    big = os.urandom(40_000)  # incompressible: stored raw, never in the memo
    assert decode(encode(big, 1024)) == big
    assert len(ser._INFLATED) <= 2
