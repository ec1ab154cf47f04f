"""``cache.disabled()``: every read misses and nothing is stored, in this thread or task
only, nested blocks, views / get_or_set / get / set, counted as bypasses."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, jsonify

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache.testing import assert_bypass, assert_hit, assert_miss

AppFactory = Callable[..., tuple[Flask, DataRoomCache]]


def counted(app: Flask, name: str) -> int:
    return int(DataRoomCache.state(app).metrics.counts()[0][name])


def test_reads_miss_and_nothing_is_stored(make_app: AppFactory, prefix: str) -> None:
    app, cache = make_app()
    with app.app_context():
        cache.set(f"{prefix}:k", "cached", tags=["t"])
        bypasses = counted(app, "bypasses")
        with cache.disabled():
            assert cache.get(f"{prefix}:k", ["t"]) is None
            assert cache.set(f"{prefix}:other", 1) is False
            assert cache.get_or_set(f"{prefix}:k", lambda: "computed", tags=["t"]) == "computed"
            assert cache.get_or_set(f"{prefix}:k2", lambda: "computed") == "computed"
        # the get, the refused set, the two get_or_set reads
        assert counted(app, "bypasses") - bypasses == 4
        assert cache.get(f"{prefix}:k", ["t"]) == "cached"  # the entry is untouched
        assert (
            cache.get(f"{prefix}:other") is None and cache.get(f"{prefix}:k2") is None
        )  # nothing was stored


def test_views_bypass_inside_the_block(make_app: AppFactory, prefix: str) -> None:
    app, cache = make_app()
    calls = []

    @app.get("/v")
    @cache.cached(shared=True, tags=["v"])
    def view() -> Any:
        calls.append(1)
        return jsonify(n=len(calls))

    client = app.test_client()
    assert_miss(client.get("/v"))
    with cache.disabled():  # no app context needed
        first, second = client.get("/v"), client.get("/v")
    assert_bypass(first)
    assert_bypass(second)
    assert second.get_json() == {"n": 3}  # the view ran each time
    hit = client.get("/v")
    assert_hit(hit)
    assert hit.get_json() == {"n": 1}  # the block stored nothing over the first entry


def test_nested_blocks(make_app: AppFactory, prefix: str) -> None:
    app, cache = make_app()
    with app.app_context():
        cache.set(f"{prefix}:k", 1)
        with cache.disabled():
            with cache.disabled():
                assert cache.get(f"{prefix}:k") is None
            assert cache.get(f"{prefix}:k") is None  # the outer block is still on
        assert cache.get(f"{prefix}:k") == 1


def test_restored_when_the_block_raises(make_app: AppFactory, prefix: str) -> None:
    app, cache = make_app()
    with app.app_context():
        cache.set(f"{prefix}:k", 1)
        with pytest.raises(RuntimeError), cache.disabled():
            raise RuntimeError("boom")
        assert cache.get(f"{prefix}:k") == 1


def test_other_threads_and_tasks_still_use_the_cache(make_app: AppFactory, prefix: str) -> None:
    app, cache = make_app()
    with app.app_context():
        cache.set(f"{prefix}:k", "cached")
    seen: list[Any] = []

    def other_thread() -> None:
        with app.app_context():
            seen.append(cache.get(f"{prefix}:k"))

    async def main() -> list[Any]:
        async def reader(disable: bool) -> Any:
            with app.app_context():
                if disable:
                    with cache.disabled():
                        await asyncio.sleep(0.01)
                        return cache.get(f"{prefix}:k")
                await asyncio.sleep(0)  # runs while the other task is inside its block
                return cache.get(f"{prefix}:k")

        return list(await asyncio.gather(reader(True), reader(False)))

    with cache.disabled():
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert seen == ["cached"]
    assert asyncio.run(main()) == [None, "cached"]


def test_invalidations_still_happen(make_app: AppFactory, prefix: str) -> None:
    app, cache = make_app()
    with app.app_context():
        cache.set(f"{prefix}:k", 1, tags=["t"])
        with cache.disabled():
            cache.invalidate_tags("t")
        assert cache.get(f"{prefix}:k", ["t"]) is None


def test_one_extension_does_not_disable_another(make_app: AppFactory, prefix: str) -> None:
    app_a, cache_a = make_app()
    app_b, cache_b = make_app()
    for app, cache in ((app_a, cache_a), (app_b, cache_b)):
        with app.app_context():
            cache.set(f"{prefix}:k", app.name)
    with cache_a.disabled():
        with app_a.app_context():
            assert cache_a.get(f"{prefix}:k") is None
        with app_b.app_context():
            assert cache_b.get(f"{prefix}:k") == app_b.name


def test_uninstall_removes_the_check(make_app: AppFactory, prefix: str) -> None:
    app, cache = make_app()
    store = DataRoomCache.state(app).store
    with cache.disabled():
        assert store.must_bypass()
    cache.uninstall(app)
    assert store.bypass_checks == []  # the tracker's and the disabler's
