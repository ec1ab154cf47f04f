"""Cache key construction: ``{prefix}:{entity_type}[:{entity_id}][:{name}={value}...]``.

Keys must be *injective*: two different calls must never produce the same key, or one
user's entry could answer another user's request. Every component is therefore escaped
(percent-encoding of anything outside a small safe alphabet), so a value can contain
``:``, ``=``, glob characters, spaces or non-ASCII text without forging a separator or
acting as a Redis ``SCAN`` pattern. Values are compared by their canonical *text*: the
integer ``5`` and the string ``"5"`` name the same entity on purpose (ids arrive as
strings from URLs and as integers from the database); ``None`` is written as ``~``,
which an escaped string can never be.

Keys longer than :data:`MAX_KEY_BYTES` keep a readable head and end in ``#`` plus a
BLAKE2b digest of the whole key. ``#`` is always escaped inside components, so a
hashed key can never equal an unhashed one.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = ["MAX_KEY_BYTES", "build_key", "escape"]

MAX_KEY_BYTES = 200
_DIGEST_HEX = 40  # 20-byte BLAKE2b digest
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.,@+")
_ESCAPE_TABLE = {c: f"%{c:02X}" for c in range(128) if chr(c) not in _SAFE}
#: Finds the first character outside ``_SAFE`` (non-ASCII included): one C-level scan
#: decides the common case, a text that needs no escaping (ids, UUIDs, names).
_NEEDS_ESCAPE = re.compile("[^" + re.escape("".join(sorted(_SAFE))) + "]").search


def _text(value: Any) -> str:
    # exact types first: the common components, without the isinstance chain
    cls = type(value)
    if cls is str:
        return escape(value)
    if cls is int:
        return str(value)  # digits and "-" only: nothing to escape
    if value is None:
        return "~"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, int | float | Decimal | uuid.UUID):
        return escape(str(value))
    if isinstance(value, datetime | date):
        return escape(value.isoformat())
    raise TypeError(
        f"cache key components must be str, int, float, Decimal, UUID, date or None, "
        f"not {type(value).__name__}"
    )


def escape(text: str) -> str:
    """Percent-encode ``text`` so it contains only safe characters (never ``:=*?[]{}#%~/``)."""
    if _NEEDS_ESCAPE(text) is None:
        return text
    if text.isascii():
        return text.translate(_ESCAPE_TABLE)
    out = []
    for ch in text:
        if ch in _SAFE:
            out.append(ch)
        else:
            # surrogatepass: a lone surrogate (possible in a Python str) still escapes, to
            # bytes valid UTF-8 never contains, so the encoding stays injective.
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def build_key(
    prefix: str, entity_type: str, entity_id: Any = None, params: dict[str, Any] | None = None
) -> str:
    """Build a key; see the module docstring for the format and its guarantees."""
    if not isinstance(entity_type, str) or not entity_type:
        raise TypeError("entity_type must be a non-empty string")
    parts = [prefix, escape(entity_type)]
    if entity_id is not None:
        parts.append(_text(entity_id))
    if params:
        for name in sorted(params):
            parts.append(f"{escape(name)}={_text(params[name])}")
    key = ":".join(parts)
    if len(key) > MAX_KEY_BYTES:
        digest = hashlib.blake2b(key.encode("ascii"), digest_size=_DIGEST_HEX // 2).hexdigest()
        key = key[: MAX_KEY_BYTES - _DIGEST_HEX - 1] + "#" + digest
    return key
