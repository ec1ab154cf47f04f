"""The storage API and the semantics memory, fakeredis and real Redis share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_dataroom_cache import (
    CacheStore,
    Settings,
    cache_delete,
    cache_get,
    cache_set,
    contents_tag,
    dataroom_tag,
    get_cache_key,
    get_cache_tags,
    get_or_set,
    invalidate_cache,
    invalidate_tags,
    user_tag,
)
from flask_dataroom_cache.backends.memory import MemoryBackend
from flask_dataroom_cache.backends.redis.layout import frame
from flask_dataroom_cache.tags import EPOCH_TAG, normalize_tags

from .conftest import REDIS_KINDS, CommandCounter, primary_of, redis_backend_of, store_of


def test_get_set_delete(app: Flask) -> None:
    key = get_cache_key("file", 1)
    assert cache_get(key) is None
    assert cache_set(key, {"name": "a.pdf"}) is True
    assert cache_get(key) == {"name": "a.pdf"}
    assert cache_set(key, {"name": "b.pdf"}) is True  # overwrite
    assert cache_get(key) == {"name": "b.pdf"}
    cache_delete(key)
    assert cache_get(key) is None
    cache_delete(key)  # deleting a missing key is fine


def test_ttl_argument_is_validated(app: Flask) -> None:
    for bad in (0, -1, 1.5, "10", True):
        with pytest.raises(ValueError, match="ttl"):
            cache_set("k", 1, ttl=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="ttl"):
            get_or_set("k", lambda: 1, ttl=bad)  # type: ignore[arg-type]


def test_invalidate_tags_hits_only_tagged_entries(app: Flask) -> None:
    a, b, c = (get_cache_key("file", i) for i in "abc")
    assert cache_set(a, "a", tags=["file:a", "folder:1/contents"])
    assert cache_set(b, "b", tags=["file:b", "folder:2/contents"])
    assert cache_set(c, "c")
    invalidate_tags("folder:1/contents")
    assert cache_get(a, ["file:a", "folder:1/contents"]) is None
    assert cache_get(b, ["file:b", "folder:2/contents"]) == "b"
    assert cache_get(c) == "c"
    invalidate_tags("file:b", "nonexistent:tag")
    assert cache_get(b, ["file:b", "folder:2/contents"]) is None
    invalidate_tags()  # nothing: a no-op
    assert cache_get(c) == "c"


def test_entry_tags_are_checked_whatever_the_reader_passes(app: Flask) -> None:
    key = get_cache_key("file", 9)
    assert cache_set(key, "v", tags=["file:9"])
    invalidate_tags("file:9")
    assert cache_get(key) is None  # the reader did not name the tag: still a miss


def test_reading_a_fresh_entry_again_after_an_invalidation_of_another_tag(app: Flask) -> None:
    key = get_cache_key("folder", "list", dataRoomId="r")
    tags = get_cache_tags("folder", "list", data_room_id="r")
    assert cache_set(key, [1], tags=tags)
    invalidate_tags(dataroom_tag("other"))
    assert cache_get(key, tags) == [1]


@pytest.mark.parametrize(
    ("call", "hit_tags", "spared_tags"),
    [
        (dict(entity_type="file", entity_id=5), ["file:5", "file:list"], ["file:6", "type:file"]),
        (dict(entity_type="file", entity_id=5, data_room_id="r1"), ["dataroom:r1"],
         ["dataroom:r2"]),
        (dict(entity_type="membership", entity_id=1, user_id="u1"), ["user:u1"], ["user:u2"]),
        (dict(entity_type="file", entity_id=5, related_entities=[("folder", "list")]),
         ["folder:list"], ["folder:5"]),
        (dict(entity_type="file", entity_id=5, related_entities=[("dataroom", "r9")]),
         ["dataroom:r9"], ["dataroom:r1"]),
        (dict(entity_type="file", entity_id=5, related_entities=[("folder", 7)]),
         ["folder:7"], ["folder:7/contents"]),
        (dict(entity_type="file", entity_id=5, related_entities=[contents_tag(7)]),
         ["folder:7/contents"], ["folder:7"]),
        (dict(entity_type="file", entity_id=None), ["file:list"], ["file:5"]),
    ],
)
def test_invalidate_cache(
    app: Flask, call: dict[str, Any], hit_tags: list[str], spared_tags: list[str]
) -> None:
    keys = {tag: get_cache_key("probe", tag) for tag in hit_tags + spared_tags}
    for tag, key in keys.items():
        assert cache_set(key, tag, tags=[tag])
    invalidate_cache(**call)
    for tag in hit_tags:
        assert cache_get(keys[tag], [tag]) is None, tag
    for tag in spared_tags:
        assert cache_get(keys[tag], [tag]) == tag, tag


def test_get_or_set(app: Flask, any_get_or_set: Callable[..., Any]) -> None:
    calls: list[int] = []

    def compute() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    key = get_cache_key("folder", "list", dataRoomId="r")
    tags = [dataroom_tag("r")]
    assert any_get_or_set(key, compute, tags=tags) == {"n": 1}
    assert any_get_or_set(key, compute, tags=tags) == {"n": 1}
    assert len(calls) == 1
    invalidate_tags(dataroom_tag("r"))
    assert any_get_or_set(key, compute, tags=tags) == {"n": 2}
    assert cache_get(key, tags) == {"n": 2}
    # None is a value: cached and served without recomputing.
    nones: list[int] = []
    none_key = get_cache_key("none")
    assert any_get_or_set(none_key, lambda: nones.append(1), tags=tags) is None
    assert any_get_or_set(none_key, lambda: nones.append(1), tags=tags) is None
    assert nones == [1]
    # An exception in compute propagates and stores nothing.
    with pytest.raises(ZeroDivisionError):
        any_get_or_set(get_cache_key("boom"), lambda: 1 // 0)
    assert any_get_or_set(get_cache_key("boom"), lambda: "ok") == "ok"


def test_get_compute_set_pattern_stores_the_captured_versions(app: Flask) -> None:
    key = get_cache_key("file", "list")
    tags = ["file:list"]
    assert cache_get(key, tags) is None
    assert cache_set(key, [1, 2], tags=tags) is True
    assert cache_get(key, tags) == [1, 2]
    # A set without a previous miss reads the versions itself and still works.
    assert cache_set(get_cache_key("file", 3), "x", tags=tags) is True
    assert cache_get(get_cache_key("file", 3), tags) == "x"


def test_ttl_is_honoured_memory_fake_clock() -> None:
    now = [1000.0]
    backend = MemoryBackend(100, clock=lambda: now[0])
    store = CacheStore(backend, Settings.from_mapping({}, environ={}))
    assert store.set("k", "v", ttl=10)
    now[0] += 9.9
    assert store.get("k") == "v"
    now[0] += 0.2
    assert store.get("k") is None
    assert store.set("k2", "v")  # default TTL from CACHE_TTL (300)
    now[0] += 299
    assert store.get("k2") == "v"
    now[0] += 2
    assert store.get("k2") is None
    assert store.add("lock", 1, ttl=5) and not store.add("lock", 1, ttl=5)
    now[0] += 6
    assert store.add("lock", 1, ttl=5)


def test_ttl_is_honoured(app: Flask, cache_kind: str) -> None:
    store = store_of(app)
    short, default = get_cache_key("ttl", "short"), get_cache_key("ttl", "default")
    assert cache_set(short, "v", ttl=1)
    assert cache_set(default, "v")
    if cache_kind in REDIS_KINDS:
        client = redis_backend_of(app).client
        assert 0 < client.pttl(short) <= 1000
        assert 299_000 < client.pttl(default) <= 300_000
        # Tag tokens outlive the entries stamped with them.
        assert client.ttl(redis_backend_of(app)._tagv + EPOCH_TAG) >= 300
        time.sleep(1.1)
        assert cache_get(short) is None
    else:
        expires = memory_entries(app)[short][0]
        assert 0 < expires - time.monotonic() <= 1
    assert cache_get(default) == "v"
    assert store.settings.ttl == 300


def memory_entries(app: Flask) -> Any:
    return primary_of(app)._entries


def test_losing_a_tag_version_never_resurrects_a_stale_entry(app: Flask, cache_kind: str) -> None:
    """Entry stamped with token T; the token key is lost (evicted/FLUSHed). A fresh token
    is created and never equals T: a miss, never the old value."""
    tags = ["folder:1/contents"]
    norm = normalize_tags(tags)
    key = get_cache_key("folder", 1)
    backend = primary_of(app)

    def lose(tag: str) -> None:
        if cache_kind in REDIS_KINDS:
            rb = redis_backend_of(app)
            assert rb.client.delete(rb._tagv + tag) == 1
        else:
            del backend._tags[tag]

    assert cache_set(key, "v1", tags=tags)
    lose("folder:1/contents")
    assert cache_get(key, tags) is None
    # Stale entry written before an invalidation, then the NEW token is lost: still a miss.
    old = backend.versions(norm)
    invalidate_tags("folder:1/contents")
    if cache_kind in REDIS_KINDS:
        redis_backend_of(app).client.set(key, frame(norm, old, b'J"stale"'), ex=60)
    else:
        backend._entries[key] = (time.monotonic() + 60, norm, old, b'J"stale"')
    lose("folder:1/contents")
    assert cache_get(key, tags) is None
    assert backend.versions(norm) != old
    # Losing the namespace epoch token: every entry misses.
    assert cache_set(key, "v2", tags=tags)
    lose(EPOCH_TAG)
    assert cache_get(key, tags) is None
    # And the cache fills again normally.
    assert get_or_set(key, lambda: "v3", tags=tags) == "v3"
    assert cache_get(key, tags) == "v3"


def test_ten_thousand_entries_under_a_tag_miss_after_one_invalidation(
    app: Flask, cache_kind: str
) -> None:
    n = 10_000
    tags = ["dataroom:big"]
    norm = normalize_tags(tags)
    store = store_of(app)
    backend = primary_of(app)
    keys = [get_cache_key("file", i) for i in range(n)]
    versions = backend.versions(norm)
    if cache_kind in REDIS_KINDS:
        client = redis_backend_of(app).client
        blob = frame(norm, versions, b'J"v"')
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.set(k, blob, ex=300)
        pipe.execute()
    else:
        backend.max_entries = n
        for k in keys:
            assert backend.set(k, b'J"v"', 300, norm, versions)
    assert store.get(keys[0], tags) == "v" and store.get(keys[-1], tags) == "v"
    invalidate_tags("dataroom:big")
    assert all(backend.get(k, norm)[0] is None for k in keys)


def test_invalidation_cost_does_not_depend_on_the_number_of_entries(
    app: Flask, counter: CommandCounter
) -> None:
    """One EVALSHA (one SET per tag inside), whether the tag covers 1 or 2,000 entries."""
    client = redis_backend_of(app).client
    backend = primary_of(app)
    invalidate_tags("warm:up")  # the first call on a server also loads the script
    counts = []
    for n, tag in ((1, "folder:small/contents"), (2000, "folder:big/contents")):
        norm = normalize_tags([tag])
        blob = frame(norm, backend.versions(norm), b'J"v"')
        pipe = client.pipeline(transaction=False)
        for i in range(n):
            pipe.set(get_cache_key("f", tag, i=i), blob, ex=300)
        pipe.execute()
        counter.reset()
        invalidate_tags(tag)
        counts.append((counter.round_trips, list(counter.commands)))
        assert cache_get(get_cache_key("f", tag, i=0), [tag]) is None
    assert counts[0] == counts[1] == (1, ["EVALSHA"])
    counter.reset()
    invalidate_tags("a:1", "b:2", "c:3")
    assert (counter.round_trips, counter.commands) == (1, ["EVALSHA"])


def test_a_hit_is_exactly_one_round_trip(app: Flask, counter: CommandCounter) -> None:
    key = get_cache_key("file", "list", folderId="f")
    tags = get_cache_tags("file", "list", data_room_id="r", folder_id="f", user_id="u")
    assert cache_get(key, tags) is None
    assert cache_set(key, {"items": list(range(20))}, tags=tags)
    assert cache_get(key, tags) is not None  # warm: scripts loaded
    counter.reset()
    assert cache_get(key, tags) == {"items": list(range(20))}
    assert (counter.round_trips, counter.commands) == (1, ["MGET"])  # entry + tokens
    counter.reset()
    assert get_or_set(key, lambda: None, tags=tags) == {"items": list(range(20))}
    assert (counter.round_trips, counter.commands) == (1, ["MGET"])
    # A miss is one round trip too (it brings back the tokens), and the fill one more.
    counter.reset()
    assert cache_get(get_cache_key("file", "other"), tags) is None
    assert (counter.round_trips, counter.commands) == (1, ["MGET"])
    counter.reset()
    assert get_or_set(get_cache_key("file", "third"), lambda: 3, tags=tags) == 3
    assert (counter.round_trips, counter.commands) == (2, ["MGET", "EVALSHA"])
    # A stale entry (tag invalidated) is a one-round-trip miss as well.
    invalidate_tags("file:list")
    counter.reset()
    assert cache_get(key, tags) is None
    assert (counter.round_trips, counter.commands) == (1, ["MGET"])


def test_reader_naming_other_tags_than_the_entry_is_still_checked(
    app: Flask, counter: CommandCounter
) -> None:
    """The fast path only decides when the entry carries exactly the requested tags;
    otherwise the script checks the entry's own tags (a second round trip, still exact)."""
    key = get_cache_key("file", 5)
    assert cache_set(key, "v", tags=["file:5", "folder:1/contents"])
    counter.reset()
    assert cache_get(key, ["file:5"]) == "v"
    assert counter.commands[0] == "MGET" and counter.commands[-1] == "EVALSHA"
    invalidate_tags("folder:1/contents")
    assert cache_get(key, ["file:5"]) is None
    assert cache_get(key) is None


def test_a_missing_token_on_the_fast_path_is_created_fresh(app: Flask, cache_kind: str) -> None:
    key = get_cache_key("file", 6)
    tags = ["brand:new"]
    assert cache_get(key, tags) is None  # tokens created (second round trip on Redis)
    assert cache_set(key, "v", tags=tags)
    assert cache_get(key, tags) == "v"


def test_user_tag_isolates_users(app: Flask) -> None:
    k1 = get_cache_key("dataroom", user_id="u1")
    k2 = get_cache_key("dataroom", user_id="u2")
    assert k1 != k2
    assert cache_set(k1, ["room-a"], tags=[user_tag("u1")])
    assert cache_set(k2, ["room-b"], tags=[user_tag("u2")])
    invalidate_tags(user_tag("u1"))
    assert cache_get(k1, [user_tag("u1")]) is None
    assert cache_get(k2, [user_tag("u2")]) == ["room-b"]


def test_functions_need_an_initialised_app() -> None:
    with pytest.raises(RuntimeError):
        cache_get("k")  # no app context
    bare = Flask("bare")
    with bare.app_context(), pytest.raises(RuntimeError, match="init_app"):
        cache_get("k")
    with bare.app_context():
        assert get_cache_key("file", 1) == "dataroom:file:1"  # naming works anywhere
