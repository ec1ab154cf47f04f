"""What the Redis backends store, and how its replies read: entry framing, key names.

``P`` is the key prefix.

* an entry (the caller's key, ``P:{entity}:...`` from :func:`get_cache_key`) is a string
  ``"<n>\\n<tag_1>\\n...<tag_n>\\n<token_1>\\n...<token_n>\\n<payload>"`` (:func:`frame`);
  a lock (``P:~lock:...``, via ``add``) is framed with no tags;
* a tag's token is at ``P:~tagv:{tag}`` (:func:`token_key_prefix`; ``~`` is always escaped
  in generated keys, so an entry key can never collide with a token key), with a TTL
  longer than any entry's.

The Lua scripts (``scripts/*.lua``) read the same framing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "decode_tokens",
    "entry_header",
    "frame",
    "glob_escape",
    "parse_frame",
    "remaining",
    "token_key_prefix",
]


def token_key_prefix(prefix: str) -> str:
    """The start of every token key of ``prefix``: ``{prefix}:~tagv:``."""
    return f"{prefix}:~tagv:"


def entry_header(tags: Sequence[str]) -> bytes:
    """The start of every entry stored with exactly ``tags``: their count and names."""
    return "\n".join([str(len(tags)), *tags, ""]).encode("utf-8")


def frame(tags: Sequence[str], versions: Sequence[str], payload: bytes) -> bytes:
    """An entry: ``payload`` stamped with ``tags`` and the tokens (``versions``) they had."""
    head = "\n".join([str(len(tags)), *tags, *versions, ""])
    return head.encode("utf-8") + payload


def parse_frame(raw: bytes) -> tuple[tuple[str, ...], tuple[str, ...], bytes] | None:
    """``(tags, versions, payload)`` of an entry :func:`frame` wrote; ``None`` for anything
    else (``get.lua`` drops such a value on a read). The same rules as the script."""
    head, sep, rest = raw.partition(b"\n")
    if not sep or not head.isdigit() or int(head) > 64:
        return None
    n = int(head)
    parts = rest.split(b"\n", 2 * n)
    if len(parts) != 2 * n + 1:
        return None
    try:
        names = tuple(p.decode("utf-8") for p in parts[: 2 * n])
    except UnicodeDecodeError:
        return None
    return names[:n], names[n:], parts[-1]


def decode_tokens(replies: Iterable[Any]) -> tuple[str, ...]:
    """Tokens as a script returned them (bytes, or str with ``decode_responses``)."""
    return tuple(t.decode() if isinstance(t, bytes) else str(t) for t in replies)


def remaining(pttl: Any) -> float | None:
    """Seconds left from a ``PTTL`` reply: ``inf`` without expiry, ``None`` if unknown."""
    if not isinstance(pttl, int):
        return None
    if pttl == -1:
        return float("inf")
    return pttl / 1000.0 if pttl >= 0 else None


def exact_remaining(res: Any) -> float | None:
    """The entry's lifetime from a ``get.lua`` hit ``{1, payload, PTTL, same}``, or
    ``None`` when the entry's tags are not exactly the ones asked about (an entry with
    automatic dependencies read by a caller that knows its declared tags only): the near
    cache keeps no copy it would index by the wrong tags (an invalidation of the others
    would never drop it)."""
    if len(res) > 3 and res[3] != 1:
        return None
    return remaining(res[2] if len(res) > 2 else None)


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a ``SCAN MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
