"""``assert_fresh_after(write, read)``: prove that a write makes a cached read fresh, or
show which tag is missing.

The check, in order:

1. ``read()`` (a callable returning a response or a value): the entry it stores is
   recorded with its key and tags (``signals.entry_stored``);
2. ``write()``, which commits: the tags it invalidates are recorded
   (``signals.tags_invalidated``);
3. ``read()`` again: the result under test;
4. ``read()`` once more inside ``cache.disabled()``: what the database says now.

The second read is **stale** when it differs from the fourth (a response: its status and
body; a value: ``==``; both after ``compare``, when given). The failure message names the
tags the read's entry carries, the tags the write sent and their overlap (none: the read
needs one of the write's tags), whether the stale answer came from the cache (``X-Cache``
of a response, the hit counter for a value), and the three answers.

Two more failures keep the check honest: a first read that did not use the cache at all
(nothing to prove), and, with ``require_change`` (the default), a write that does not
change what the read returns (then a stale read cannot be told from a fresh one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .captures import StoredEntries, capture_entries, capture_invalidations, listen_target
from .responses import describe_response, x_cache

__all__ = ["assert_fresh_after"]

T = TypeVar("T")


def _is_response(result: Any) -> bool:
    return hasattr(result, "headers") and callable(getattr(result, "get_data", None))


def _comparable(result: Any, compare: Callable[[Any], Any] | None) -> Any:
    if compare is not None:
        return compare(result)
    if _is_response(result):
        return result.status_code, result.get_data()
    return result


def _show(result: Any) -> str:
    if _is_response(result):
        return describe_response(result)
    text = repr(result)
    return text if len(text) <= 200 else text[:200] + "..."


def _hits(app: Any) -> int:
    from ..extension import DataRoomCache

    return DataRoomCache.state(app).metrics.counts()[0].get("hits", 0)


def _from_cache(result: Any, app: Any, hits_before: int | None) -> str:
    """``HIT``/``MISS``/``BYPASS`` of a response (its ``X-Cache``); for a value, ``HIT``
    when the read counted a hit on ``app`` (``hits_before``: the count before it, None:
    unknown), else ``MISS``."""
    if _is_response(result):
        return x_cache(result) or "no X-Cache header"
    if hits_before is None:
        return "unknown"
    return "HIT" if _hits(app) > hits_before else "MISS"


def _app_of(app: Any, stored: StoredEntries) -> Any:
    from blinker import ANY

    target = listen_target(app)
    if target is not ANY:
        return target
    for entry in stored.entries:
        if entry.app is not None:
            return entry.app
    raise TypeError(
        "assert_fresh_after: cannot tell which app to check; pass app=... (or call it "
        "inside an app context)"
    )


def assert_fresh_after(
    write: Callable[[], Any],
    read: Callable[[], T],
    *,
    app: Any = None,
    compare: Callable[[T], Any] | None = None,
    require_change: bool = True,
) -> T:
    """Read, write, read again: fail with the tags involved when the second read is stale.

    ``read()`` returns a response (a test client's ``client.get(...)``) or a value (a
    ``get_or_set`` call, a cached function); ``write()`` changes the data and commits.
    ``app``: the app whose cache is checked (default: the current app, else the app of the
    entry the first read stored). ``compare(result)``: the part of a result to compare
    (default: status and body of a response, the value itself). ``require_change=False``
    accepts a write that leaves the read's answer unchanged. Returns the second read.
    """
    __tracebackhide__ = True
    from blinker import ANY

    from ..extension import DataRoomCache

    known = listen_target(app)
    hits_before = None if known is ANY else _hits(known)
    with capture_entries(app) as stored:
        first = read()
    target = _app_of(app, stored)
    first_state = _from_cache(first, target, hits_before)
    if not stored.entries and first_state != "HIT":
        raise AssertionError(
            "assert_fresh_after: the first read() did not use the cache (it stored no entry"
            f" and was not a hit: {first_state}), so there is nothing to prove."
            f"\n  read(): {_show(first)}"
        )

    with capture_invalidations(target) as sent:
        write()

    hits_before = _hits(target)
    second = read()
    second_state = _from_cache(second, target, hits_before)
    with DataRoomCache.state(target).extension.disabled():
        fresh = read()

    before, after, now = (_comparable(r, compare) for r in (first, second, fresh))
    if after != now:
        raise AssertionError(_stale_message(stored, sent, second_state, first, second, fresh))
    if require_change and before == now:
        raise AssertionError(
            "assert_fresh_after: write() did not change what read() returns, so a stale "
            "read cannot be told from a fresh one (pass require_change=False if that is "
            f"intended).\n  read() before write(): {_show(first)}\n"
            f"  read() after write():  {_show(second)}"
        )
    return second


def _stale_message(
    stored: StoredEntries, sent: Any, state: str, first: Any, second: Any, fresh: Any
) -> str:
    entry_tags: set[str] = {tag for entry in stored.entries for tag in entry.tags}
    written = list(dict.fromkeys(sent.tags))
    overlap = [tag for tag in written if tag in entry_tags]
    lines = []
    if state == "HIT":
        lines.append("assert_fresh_after: read() after write() is stale: served from the cache")
    else:
        lines.append(
            f"assert_fresh_after: read() after write() is stale, yet not served from the "
            f"cache ({state}): the read computed it; did write() commit where read() reads?"
        )
    lines.append(f"  read() before write():    {_show(first)}")
    lines.append(f"  read() after write():     {_show(second)}")
    lines.append(f"  read() without the cache: {_show(fresh)}")
    if stored.entries:
        lines.append("  the read's entry carries the tags:")
        lines.extend(f"    {e.key}: {', '.join(e.tags)}" for e in stored.entries)
    else:
        lines.append(
            "  the read's entry was cached before the first read() (a hit): its tags are "
            "unknown here; start from an empty cache (the dataroom_cache fixture)"
        )
    lines.append("  write() invalidated:" if sent.batches else "  write() invalidated nothing")
    lines.extend(f"    {b.source}: {', '.join(b.tags)}" for b in sent.batches)
    if not sent.batches:
        lines.append(
            "  -> did write() commit? are the changed models declared with cache.track, and "
            "is the session or engine the one the cache tracks?"
        )
    elif overlap:
        lines.append(
            f"  overlap: {', '.join(overlap)} -- the entry carries an invalidated tag, yet "
            "the stale answer came back: was it stored again from data read before the "
            "commit (another thread), or is the write on another app's cache?"
        )
    elif stored.entries:
        lines.append(
            "  overlap: none -- the entry carries none of the tags the write invalidated: "
            "add one of them to the read's tags (tags=... on @cache.cached / get_or_set), "
            "or declare what the write changes with cache.track so it sends one of the "
            "entry's tags"
        )
    return "\n".join(lines)
