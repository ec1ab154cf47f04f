"""``escape``'s fast path (one regex scan) agrees with the per-character definition."""

from __future__ import annotations

import random

from flask_dataroom_cache.keys import _SAFE, escape


def _reference(text: str) -> str:
    out = []
    for ch in text:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def test_code_points_escape_as_defined() -> None:
    # every 1- and 2-byte UTF-8 code point, every surrogate, a stride through the rest
    points = [*range(0x800), *range(0xD800, 0xE000), *range(0x800, 0x110000, 97), 0x10FFFF]
    for i in points:
        ch = chr(i)
        assert escape(ch) == _reference(ch), hex(i)


def test_mixed_texts_escape_as_defined() -> None:
    rng = random.Random(20261125)
    alphabet = [*map(chr, range(300)), "\ud800", "é", "😀", "]", "^", "\\", "-", "%", "~"]
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert escape(text) == _reference(text), repr(text)
    uid = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b"
    assert escape(uid) is uid  # nothing to escape: the same object back
