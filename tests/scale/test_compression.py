"""Compression: zlib and zstd entries both read back, whichever wrote them."""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any

import pytest

from flask_dataroom_cache import serialization
from flask_dataroom_cache.serialization import CodecError, decode, encode

BIG: dict[str, Any] = {"items": [{"id": i, "name": f"file {i}.pdf"} for i in range(200)]}
BIG_MARKED: dict[str, Any] = {"at": datetime(2024, 1, 2, 3, 4, 5), **BIG}
BIG_BYTES = b"<html>" + b"row " * 2000 + b"</html>"

needs_zstd = pytest.mark.skipif(not serialization.HAVE_ZSTD, reason="zstandard not installed")


@pytest.mark.parametrize("value", [BIG, BIG_MARKED, BIG_BYTES])
def test_zlib_roundtrip(value: Any) -> None:
    data = encode(value, 1024, zstd=False)
    assert data[0:1] in (b"j", b"x", b"b")
    assert len(data) < len(encode(value, 0))
    assert decode(data) == value


@needs_zstd
@pytest.mark.parametrize("value", [BIG, BIG_MARKED, BIG_BYTES])
def test_zstd_roundtrip_is_the_default_when_installed(value: Any) -> None:
    data = encode(value, 1024)
    assert data[0:1] == b"z" and data[1:2] in (b"J", b"X", b"B")
    assert len(data) < len(encode(value, 0))
    assert decode(data) == value


def test_small_values_stay_uncompressed() -> None:
    assert encode({"a": 1}, 1024)[0:1] == b"J"
    assert encode(b"x" * 10, 1024)[0:1] == b"B"


@needs_zstd
def test_mixed_old_and_new_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    old = encode(BIG, 1024, zstd=False)  # written by a process without zstd
    new = encode(BIG, 1024)  # written with zstd
    assert old[0:1] == b"j" and new[0:1] == b"z"
    assert decode(old) == decode(new) == BIG
    # A process without zstandard still reads zlib and plain entries, and treats zstd
    # entries as undecodable (a miss), never as garbage.
    monkeypatch.setattr(serialization, "HAVE_ZSTD", False)
    assert decode(old) == BIG
    assert decode(encode(BIG, 0)) == BIG
    with pytest.raises(CodecError, match="zstandard"):
        decode(new)
    assert encode(BIG, 1024)[0:1] == b"j"  # and writes zlib
    with pytest.raises(RuntimeError):
        encode(BIG, 1024, zstd=True)


def test_corrupt_compressed_bodies_are_codec_errors() -> None:
    with pytest.raises(CodecError):
        decode(b"j" + b"not zlib")
    with pytest.raises(CodecError):
        decode(b"j" + zlib.compress(b"\xff\xfe"))
    if serialization.HAVE_ZSTD:
        with pytest.raises(CodecError):
            decode(b"zJ" + b"not zstd at all")


def test_store_compresses_large_values_transparently(app: Any) -> None:
    from flask_dataroom_cache import DataRoomCache

    store = DataRoomCache.state(app).store
    key = f"{app.config['CACHE_KEY_PREFIX']}:file:list"
    assert store.set(key, BIG, tags=["room:1"])
    assert store.get(key, tags=["room:1"]) == BIG
