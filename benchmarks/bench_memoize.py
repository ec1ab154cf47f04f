"""``@cache.memoize`` hit against ``cache_get`` of the same value, in one run.

* median µs of a hit of a memoized function (``report(1, 7)``: its key built from the
  normalised arguments, one ``MGET`` of the entry and its tags' tokens, decode) and of
  ``cache_get(key, tags)`` of the same value with the same declared tags, measured in
  alternating short rounds (A B A B ...) on the same real Redis; their ratio is the median
  of the per-round ratios (target <= 1.2x). The memoized entry carries two more tags (the
  function's and its own, for ``invalidate_all`` / ``invalidate``).
* the same pair on the memory backend (information: no round trip, so what is left is
  the CPU cost of keying the call and of the value entry).
* the memoized hit on memory with the debug panel's ``lookup_log`` hook set on the store
  (the panel on the app, this call not in a recorded request: the hook answers ``None``)
  against the hook unset (no panel: one attribute check), alternating (information).

Everything lives under a random key prefix that is removed (SCAN + UNLINK) afterwards.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from . import PAYLOAD, BenchEnv, make_app, measure, ratio_row, row, temp_prefix

GROUP = "memoize"


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_us": round(statistics.median(samples), 3),
        "min_us": round(min(samples), 3),
        "max_us": round(max(samples), 3),
    }


def _pair(app: Any, rounds: int, number: int) -> tuple[list[float], list[float]]:
    """Per-round medians of ``cache_get`` and of the memoized hit, alternating."""
    from flask_dataroom_cache import DataRoomCache, cache_get, get_cache_key, get_cache_tags

    tags = get_cache_tags("file", "list", data_room_id=1, folder_id=7)
    cache: DataRoomCache = DataRoomCache.state(app).extension

    @cache.memoize(tags=tags)
    def report(data_room_id: int, folder_id: int) -> dict[str, Any]:
        return PAYLOAD

    with app.app_context():
        store = DataRoomCache.state(app).store
        assert store.settings.redis_url is None or "redis" in app.config["REDIS_URL"]
        key = get_cache_key("file", "list", dataRoomId=1, folderId=7)
        assert store.get_or_set(key, lambda: PAYLOAD, tags=tags) == PAYLOAD
        assert report(1, 7) == PAYLOAD  # the miss: stored
        hits_before = store.metrics.snapshot()["total"]["hits"]
        plain: Callable[[], Any] = lambda: cache_get(key, tags)  # noqa: E731
        memo: Callable[[], Any] = lambda: report(1, 7)  # noqa: E731
        assert plain() == PAYLOAD and memo() == PAYLOAD
        gets: list[float] = []
        memos: list[float] = []
        for _ in range(rounds):
            gets.append(measure(plain, number=number, repeats=1)["median_us"])
            memos.append(measure(memo, number=number, repeats=1)["median_us"])
        hits = store.metrics.snapshot()["total"]["hits"] - hits_before
        assert hits >= 2 * rounds * number, "the benchmark did not measure hits"
        store.backend.close()
    return gets, memos


def _hooked(app: Any, rounds: int, number: int) -> tuple[list[float], list[float]]:
    """Per-round medians of a memoized hit without, then with, a ``lookup_log`` hook."""
    from flask_dataroom_cache import DataRoomCache

    cache: DataRoomCache = DataRoomCache.state(app).extension

    @cache.memoize(tags=["bench:hook"])
    def report(data_room_id: int) -> dict[str, Any]:
        return PAYLOAD

    with app.test_request_context("/"):  # what the recorder's hook looks for
        store = DataRoomCache.state(app).store
        assert report(1) == PAYLOAD
        call: Callable[[], Any] = lambda: report(1)  # noqa: E731
        unset: list[float] = []
        hooked: list[float] = []
        from flask_dataroom_cache.debug import recorder

        not_recorded = lambda: recorder._current(app)  # noqa: E731  (None: no log here)
        for _ in range(rounds):
            store.lookup_log = None
            unset.append(measure(call, number=number, repeats=1)["median_us"])
            store.lookup_log = not_recorded
            hooked.append(measure(call, number=number, repeats=1)["median_us"])
        store.lookup_log = None
    return unset, hooked


def run(env: BenchEnv) -> list[dict[str, Any]]:
    import redis

    rounds = 9 if env.quick else 25
    client = redis.Redis.from_url(env.redis_url)
    client.ping()
    try:
        with temp_prefix(client) as prefix:
            gets, memos = _pair(make_app(env.redis_url, prefix), rounds, 300 if env.quick else 1000)
    finally:
        client.close()
    ratio = statistics.median(m / g for m, g in zip(memos, gets, strict=True))
    memory_app = make_app("", "benchmem", DATAROOM_REDIS_URL="")  # "" wins over the env
    mem_gets, mem_memos = _pair(memory_app, rounds, 2000 if env.quick else 5000)
    mem_ratio = statistics.median(m / g for m, g in zip(mem_memos, mem_gets, strict=True))
    unset, hooked = _hooked(memory_app, rounds, 2000 if env.quick else 5000)
    hook_ratio = statistics.median(h / u for h, u in zip(hooked, unset, strict=True))
    note = f"{rounds} rounds, alternating"
    return [
        row(GROUP, "hit: cache_get on Redis", _summary(gets), note=note),
        row(GROUP, "hit: memoized function on Redis", _summary(memos), note=note),
        ratio_row(GROUP, "memoized function hit / cache_get of the same value (Redis)", ratio,
                  "<= 1.2x", ratio <= 1.2),
        row(GROUP, "hit: cache_get on memory", _summary(mem_gets), note=note),
        row(GROUP, "hit: memoized function on memory", _summary(mem_memos), note=note),
        ratio_row(GROUP, "memoized function hit / cache_get (memory, CPU only)", mem_ratio,
                  "info", True),
        row(GROUP, "hit: memoized, no debug panel (memory)", _summary(unset), note=note),
        row(GROUP, "hit: memoized, panel on, request not recorded (memory)", _summary(hooked),
            note=note),
        ratio_row(GROUP, "memoized hit, panel hook set / unset (memory)", hook_ratio, "info",
                  True),
    ]
