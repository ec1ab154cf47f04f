"""``@cache.memoize``: keying by normalised arguments, methods, tags, the three methods,
the promises (capture before compute, ``None`` cacheable, single flight, stale refresh)
and ``get_or_set``'s single flight. On memory, fakeredis and real Redis (``make_app``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache.flights import Flights
from flask_dataroom_cache.memoize import call as call_module
from flask_dataroom_cache.store import CacheStore

MakeApp = Callable[..., tuple[Flask, DataRoomCache]]


@pytest.fixture
def cache(make_app: MakeApp) -> Iterator[DataRoomCache]:
    app, ext = make_app()
    with app.app_context():
        yield ext


def _store(cache: DataRoomCache) -> CacheStore:
    return cache.state().store


class Counter:
    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.lock = threading.Lock()

    def add(self, item: Any) -> None:
        with self.lock:
            self.calls.append(item)

    def __len__(self) -> int:
        return len(self.calls)


# -- keys -------------------------------------------------------------------------------------
def test_positional_keyword_and_default_arguments_are_one_entry(cache: DataRoomCache) -> None:
    seen = Counter()

    @cache.memoize()
    def f(a: int, b: int = 2) -> list[int]:
        seen.add((a, b))
        return [a, b]

    assert f(1, b=2) == f(1, 2) == f(a=1, b=2) == f(b=2, a=1) == f(1) == [1, 2]
    assert len(seen) == 1
    assert f(1, 3) == [1, 3]
    assert len(seen) == 2


def test_keyword_order_and_var_arguments(cache: DataRoomCache) -> None:
    seen = Counter()

    @cache.memoize
    def f(*args: Any, **kwargs: Any) -> int:
        seen.add(1)
        return len(seen)

    assert f(1, 2, x="a", y="b") == f(1, 2, y="b", x="a") == 1
    assert f(2, 1, x="a", y="b") == 2  # positional order matters
    assert f(1, 2, x="a") == 3
    assert f(1, 2, **{"x.int": "a"}) == 4  # a keyword name cannot forge a type marker


def test_types_are_part_of_the_key(cache: DataRoomCache) -> None:
    @cache.memoize()
    def echo(x: Any) -> Any:
        return x

    values: list[Any] = [5, "5", 5.0, True, "true", None, "~"]
    assert [echo(v) for v in values] == values
    assert [type(echo(v)) for v in values] == [type(v) for v in values]  # all hits now


def test_equal_values_with_other_texts_never_share_a_warm_key(cache: DataRoomCache) -> None:
    """Decimal("1.0") == Decimal("1.00"), 0.0 == -0.0, one instant in two time zones: the
    key follows the text, in a warm process as in a cold one (the memo of built keys
    must not answer one with the other's key)."""
    from datetime import UTC, datetime, timedelta, timezone
    from decimal import Decimal

    @cache.memoize()
    def echo(x: Any) -> str:
        return str(x)

    utc = datetime(2026, 1, 1, 12, tzinfo=UTC)
    plus1 = utc.astimezone(timezone(timedelta(hours=1)))
    for first, second in ((Decimal("1.0"), Decimal("1.00")), (0.0, -0.0), (utc, plus1)):
        assert first == second
        assert echo(first) == str(first)
        assert echo(second) == str(second)  # not the first's entry


def test_an_unkeyable_default_left_out_is_keyed_as_the_default(cache: DataRoomCache) -> None:
    """A sentinel default (or any default object a key cannot hold) does not make the
    function unusable: calls that leave it out share one entry; passing another object
    there is still refused."""
    missing = object()
    calls = Counter()

    @cache.memoize()
    def lookup(name: str, default: Any = missing) -> str:
        calls.add(name)
        return name.upper() if default is missing else str(default)

    assert lookup("a") == "A"
    assert lookup("a") == "A"
    assert len(calls) == 1
    assert lookup("a", "x") == "x"  # a keyable value: its own entry
    with pytest.raises(TypeError, match="default"):
        lookup("a", object())


def test_containers_are_keyed_by_their_typed_elements(cache: DataRoomCache) -> None:
    """Lists, tuples, dicts with str keys and sets of one type are keyed canonically
    and injectively: elements keep their types, a list and a tuple are two entries,
    dict keys and set elements are ordered."""
    seen = Counter()

    @cache.memoize()
    def describe(x: Any) -> str:
        seen.add(x)
        return f"{type(x).__name__}:{x!r}"

    calls: list[Any] = [
        [1, 2],
        ["1", "2"],
        (1, 2),
        [1.0, 2],
        [[1], 2],
        [1, [2]],
        [],
        [[]],
        [""],
        [None],
        ["~"],
        ["a;s:b"],  # cannot forge a separator or an element code
        ["a", "s:b"],
        {"a": 1},
        {"a": "1"},
        {"a": 1, "b": 2},
        {"a": [1]},
        {"a=i:1": 1},
        {"a": {"b": 1}},
        {1, 2},
        frozenset({"1", "2"}),
    ]
    first = [describe(x) for x in calls]
    assert first == [f"{type(x).__name__}:{x!r}" for x in calls]
    assert len(seen) == len(calls)  # every one an entry of its own
    assert [describe(x) for x in calls] == first  # ... and every one a hit now
    assert len(seen) == len(calls)
    # canonical: the same value built another way is the same entry
    assert describe({"b": 2, "a": 1}) == first[calls.index({"a": 1, "b": 2})]
    assert describe({2, 1}) == first[calls.index({1, 2})]
    assert describe({1, 2}.union()) == first[calls.index({1, 2})]
    assert len(seen) == len(calls)
    # a set and a frozenset are equal in Python: one entry
    assert describe(frozenset({1, 2})) == first[calls.index({1, 2})]
    assert len(seen) == len(calls)


def test_argument_values_are_escaped_in_the_key(cache: DataRoomCache) -> None:
    from flask_dataroom_cache.memoize.keying import ArgumentKeys

    def f(q: str) -> None: ...

    key = ArgumentKeys(f, "mod.f").key("p", ("a:b=*c",), {})
    assert key == "p:%7Ememo:mod.f:q=a%3Ab%3D%2Ac"
    assert ArgumentKeys(f, "mod.f").key("p", (), {"q": "a:b=*c"}) == key


def test_unsupported_argument_type_is_a_clear_error(cache: DataRoomCache) -> None:
    @cache.memoize()
    def f(x: Any) -> int:
        return 1

    with pytest.raises(TypeError) as info:
        f(object())
    message = str(info.value)
    assert "f()" in message and "'x'" in message and "__cache_key__" in message
    assert "0x" not in message  # never a repr with a memory address
    with pytest.raises(TypeError, match=r"f\(\).*argument 'x'.*__cache_key__"):
        f([1, object()])  # a container of an unsupported object
    with pytest.raises(TypeError, match=r"f\(\).*'x' is a set of mixed types \(int, str\)"):
        f({1, "1"})
    with pytest.raises(TypeError, match=r"f\(\).*'x' is a dict with a int key"):
        f({1: "a"})
    nested: list[Any] = []
    nested.append(nested)
    with pytest.raises(TypeError, match=r"f\(\).*nests containers deeper"):
        f(nested)
    with pytest.raises(TypeError, match=r"f\(\)"):
        f(1, 2)  # does not bind to the signature


# -- methods ----------------------------------------------------------------------------------
def test_method_keyed_by_cache_key(cache: DataRoomCache) -> None:
    seen = Counter()

    class Repo:
        def __init__(self, ident: int) -> None:
            self.ident = ident

        def __cache_key__(self) -> int:
            return self.ident

        @cache.memoize(tags=["repo"])
        def names(self, prefix: str) -> list[str]:
            seen.add((self.ident, prefix))
            return [f"{prefix}{self.ident}"]

    assert Repo(1).names("n") == ["n1"]
    assert Repo(1).names(prefix="n") == ["n1"]  # another object, same __cache_key__
    assert Repo(2).names("n") == ["n2"]
    assert len(seen) == 2
    repo = Repo(1)
    assert repo.names.uncached("n") == ["n1"] and len(seen) == 3
    repo.names.invalidate("n")
    assert Repo(1).names("n") == ["n1"] and len(seen) == 4
    assert Repo(2).names("n") == ["n2"] and len(seen) == 4  # only that entry
    assert Repo.names(repo, "n") == ["n1"] and len(seen) == 4  # through the class


def test_method_without_cache_key_is_refused(cache: DataRoomCache) -> None:
    class Repo:
        @cache.memoize()
        def names(self) -> list[str]:
            return []

    with pytest.raises(TypeError) as info:
        Repo().names()
    message = str(info.value)
    assert "Repo.names()" in message and "'self'" in message
    assert "Repo.__cache_key__(self)" in message
    assert "0x" not in message


def test_classmethod_and_staticmethod_either_order(cache: DataRoomCache) -> None:
    seen = Counter()

    class Base:
        @classmethod
        def __cache_key__(cls) -> str:
            return cls.__qualname__

        @cache.memoize()
        @classmethod
        def kind(cls, x: int) -> str:
            seen.add(("kind", cls.__name__, x))
            return f"{cls.__name__}{x}"

        @classmethod
        @cache.memoize()
        def kind_below(cls, x: int) -> str:
            seen.add(("below", cls.__name__, x))
            return f"{cls.__name__}{x}"

        @cache.memoize()
        @staticmethod
        def double(x: int) -> int:
            seen.add(("double", x))
            return 2 * x

        @staticmethod
        @cache.memoize()
        def triple(x: int) -> int:
            seen.add(("triple", x))
            return 3 * x

    class Sub(Base):
        pass

    for _ in range(2):
        assert Base.kind(1) == "Base1" and Sub.kind(1) == "Sub1" and Base().kind(1) == "Base1"
        assert Base.kind_below(1) == "Base1" and Sub.kind_below(1) == "Sub1"
        assert Base.double(2) == 4 and Base().double(2) == 4
        assert Sub.triple(2) == 6 and Base.triple(2) == 6
    assert sorted(seen.calls) == sorted(
        [
            ("kind", "Base", 1),
            ("kind", "Sub", 1),
            ("below", "Base", 1),
            ("below", "Sub", 1),
            ("double", 2),
            ("triple", 2),
        ]
    )
    Sub.kind.invalidate(1)  # the supported order: memoize above classmethod knows cls
    assert Sub.kind(1) == "Sub1" and Base.kind(1) == "Base1"
    assert seen.calls.count(("kind", "Sub", 1)) == 2
    assert seen.calls.count(("kind", "Base", 1)) == 1
    Base.double.invalidate(2)
    assert Base.double(2) == 4 and seen.calls.count(("double", 2)) == 2


def test_classmethod_without_class_cache_key_is_refused(cache: DataRoomCache) -> None:
    class Repo:
        def __cache_key__(self) -> int:  # an instance method: no key for the class
            return 1

        @cache.memoize()
        @classmethod
        def load(cls) -> int:
            return 1

    with pytest.raises(TypeError, match=r"Repo.load\(\).*'cls'.*@classmethod def __cache_key__"):
        Repo.load()


# -- tags and the three methods ---------------------------------------------------------------
def test_tags_list_and_callable(cache: DataRoomCache) -> None:
    seen = Counter()

    @cache.memoize(tags=["rooms"])
    def rooms(user: str) -> list[str]:
        seen.add(("rooms", user))
        return [user]

    @cache.memoize(tags=lambda room, page=1: [f"room:{room}"])
    def files(room: int, page: int = 1) -> list[int]:
        seen.add(("files", room, page))
        return [room, page]

    for _ in range(2):
        assert rooms("u1") == ["u1"] and rooms("u2") == ["u2"]
        assert files(1) == [1, 1] and files(2, page=3) == [2, 3]
    assert len(seen) == 4
    cache.invalidate_tags("room:2")
    assert files(1) == [1, 1] and files(2, page=3) == [2, 3]
    assert len(seen) == 5 and seen.calls[-1] == ("files", 2, 3)
    cache.invalidate_tags("rooms")
    assert rooms("u1") == ["u1"] and rooms("u2") == ["u2"]
    assert len(seen) == 7


def test_reserved_and_malformed_tags_are_refused(cache: DataRoomCache) -> None:
    with pytest.raises(ValueError, match="reserved"):
        cache.memoize(tags=["~memo:x"])
    with pytest.raises(TypeError, match="single string"):
        cache.memoize(tags="rooms")

    @cache.memoize(tags=lambda x: "room:1")
    def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="not a single string"):
        f(1)


def test_invalidate_one_entry_invalidate_all_and_uncached(cache: DataRoomCache) -> None:
    seen = Counter()

    @cache.memoize()
    def f(a: int, b: int = 0) -> int:
        seen.add((a, b))
        return a + b

    @cache.memoize()
    def g(a: int) -> int:
        seen.add(("g", a))
        return a

    assert [f(1), f(2), f(3, 1), g(1)] == [1, 2, 4, 1]
    assert len(seen) == 4
    f.invalidate(a=1, b=0)  # normalised like a call: the entry of f(1)
    assert [f(1), f(2), f(3, 1), g(1)] == [1, 2, 4, 1]
    assert seen.calls[4:] == [(1, 0)]
    f.invalidate_all()
    assert [f(1), f(2), f(3, 1), g(1)] == [1, 2, 4, 1]
    assert seen.calls[5:] == [(1, 0), (2, 0), (3, 1)]  # every f, never g
    assert f.uncached(1) == 1 and seen.calls[-1] == (1, 0) and len(seen) == 9
    assert f(1) == 1 and len(seen) == 9  # uncached did not touch the cache


def test_function_tag_cannot_be_forged_by_a_user_tag(cache: DataRoomCache) -> None:
    from flask_dataroom_cache.memoize.keying import entry_tag, function_tag

    store = _store(cache)
    prefix = store.settings.key_prefix

    @cache.memoize()
    def f() -> int:
        return 1

    key = f.keys.key(prefix, (), {})
    assert function_tag(f.name) != entry_tag(prefix, key)
    assert function_tag(f.name).startswith("~memo:") and ":" not in function_tag(f.name)[6:]


def test_none_is_cached(cache: DataRoomCache) -> None:
    seen = Counter()

    @cache.memoize()
    def find(name: str) -> Any:
        seen.add(name)
        return None

    assert find("x") is None and find("x") is None and find(name="x") is None
    assert len(seen) == 1
    assert _store(cache).metrics.snapshot()["total"]["hits"] == 2


def test_value_the_codec_changes_is_returned_not_cached(
    cache: DataRoomCache, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Counter()

    @cache.memoize()
    def pair(x: int) -> tuple[int, int]:
        seen.add(x)
        return (x, x)

    with caplog.at_level(logging.WARNING, logger="flask_dataroom_cache"):
        assert pair(1) == (1, 1) and pair(1) == (1, 1)
    assert len(seen) == 2
    warned = [r for r in caplog.records if "pair()" in r.getMessage()]
    assert len(warned) == 1 and "tuple" in warned[0].getMessage()


def test_capture_before_compute_an_invalidation_during_compute_wins(
    cache: DataRoomCache,
) -> None:
    seen = Counter()

    @cache.memoize(tags=["room:1"])
    def load(x: int) -> int:
        seen.add(x)
        if len(seen) == 1:
            cache.invalidate_tags("room:1")  # a commit lands while the value is computed
        return len(seen)

    assert load(1) == 1
    assert load(1) == 2  # the first value was dead on arrival
    assert load(1) == 2
    assert len(seen) == 2


def test_invalidate_during_compute_drops_the_value(cache: DataRoomCache) -> None:
    seen = Counter()

    @cache.memoize()
    def load(x: int) -> int:
        seen.add(x)
        if len(seen) == 1:
            load.invalidate(x)
        return len(seen)

    assert load(1) == 1 and load(1) == 2 and load(1) == 2


def test_outside_an_app_context_is_a_clear_error(make_app: MakeApp) -> None:
    _app, cache = make_app()

    @cache.memoize()
    def f() -> int:
        return 1

    with pytest.raises(RuntimeError, match=r"f\(\).*outside an application context"):
        f()
    with pytest.raises(RuntimeError, match="application context"):
        f.invalidate()
    assert f.uncached() == 1


def test_disabled_cache_computes_every_time(make_app: MakeApp) -> None:
    app, cache = make_app(CACHE_ENABLED=False)
    seen = Counter()

    @cache.memoize()
    def f() -> int:
        seen.add(1)
        return 1

    with app.app_context():
        assert f() == f() == 1
    assert len(seen) == 2


def test_bad_options_and_async_functions_are_refused(cache: DataRoomCache) -> None:
    with pytest.raises(ValueError, match="timeout"):
        cache.memoize(0)
    with pytest.raises(ValueError, match="stale_while_revalidate"):
        cache.memoize(stale_while_revalidate=-1)

    async def coro() -> int:
        return 1

    with pytest.raises(TypeError, match="async def"):
        cache.memoize()(coro)


# -- single flight ----------------------------------------------------------------------------
class CountingFlights(Flights):
    """Counts how many callers reached the single-flight registry."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = 0
        self.cond = threading.Condition()

    def lead(self, key: str) -> threading.Event | None:
        with self.cond:
            self.arrived += 1
            self.cond.notify_all()
        return super().lead(key)

    def wait_for(self, n: int, timeout: float = 30) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.arrived >= n, timeout)


def _run_threads(app: Flask, n: int, target: Callable[[], Any]) -> list[Any]:
    results: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with app.app_context():
                results.append(target())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_concurrent_misses_of_a_memoized_call_compute_once(make_app: MakeApp) -> None:
    app, cache = make_app()
    flights = CountingFlights()
    cache.state(app).store.flights = flights
    n = 12
    seen = Counter()

    @cache.memoize(tags=["t"])
    def slow(x: int) -> dict[str, int]:
        seen.add(x)
        assert flights.wait_for(n)  # every caller has missed and reached the flight
        return {"x": x}

    results = _run_threads(app, n, lambda: slow(7))
    assert results == [{"x": 7}] * n
    assert len(seen) == 1


def test_concurrent_misses_of_get_or_set_compute_once(make_app: MakeApp) -> None:
    app, cache = make_app()
    flights = CountingFlights()
    cache.state(app).store.flights = flights
    n = 12
    seen = Counter()

    def compute() -> list[int]:
        seen.add(1)
        assert flights.wait_for(n)
        return [1, 2]

    results = _run_threads(app, n, lambda: cache.get_or_set("k", compute, tags=["t"]))
    assert results == [[1, 2]] * n
    assert len(seen) == 1


def test_a_flight_ends_when_the_compute_raises(cache: DataRoomCache) -> None:
    seen = Counter()

    @cache.memoize()
    def boom() -> int:
        seen.add(1)
        if len(seen) == 1:
            raise KeyError("x")
        return 2

    with pytest.raises(KeyError):
        boom()
    assert boom() == 2 and boom() == 2 and len(seen) == 2
    assert _store(cache).flights._running == {}


def test_recursive_call_of_the_same_key_does_not_wait_on_itself(cache: DataRoomCache) -> None:
    seen = Counter()

    @cache.memoize()
    def rec(depth: int) -> int:
        seen.add(depth)
        if len(seen) == 1:
            return rec(depth)  # the same key, inside its own flight: computes
        return 5

    assert rec(1) == 5 and rec(1) == 5 and len(seen) == 2


# -- the cross-process lock (in-process view of it) --------------------------------------------
def test_lock_true_takes_and_releases_the_lock(cache: DataRoomCache) -> None:
    store = _store(cache)
    held: list[bool] = []

    @cache.memoize(lock=True)
    def locked(x: int) -> int:
        lock_key = _lock_key(store, locked.keys.key(store.settings.key_prefix, (x,), {}))
        held.append(not store.add(lock_key, "probe", 5))
        return x

    assert locked(1) == 1 and held == [True]
    lock_key = _lock_key(store, locked.keys.key(store.settings.key_prefix, (1,), {}))
    assert store.add(lock_key, "probe", 5)  # released after the fill
    assert locked(1) == 1 and held == [True]


def test_lock_held_elsewhere_waits_then_reads_what_the_holder_stored(
    cache: DataRoomCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_dataroom_cache import flights as flights_module
    from flask_dataroom_cache.memoize.keying import entry_tag
    from flask_dataroom_cache.tags import normalize_tags

    store = _store(cache)
    prefix = store.settings.key_prefix
    seen = Counter()

    @cache.memoize(lock=True)
    def locked(x: int) -> str:
        seen.add(x)
        return f"computed {len(seen)}"

    key = locked.keys.key(prefix, (1,), {})
    tags = normalize_tags(locked.tags_of((1,), {}, entry_tag(prefix, key)))
    assert store.add(_lock_key(store, key), "other", 5)  # another process computes
    real_sleep = flights_module.time.sleep
    sleeps: list[float] = []

    def other_process_stores_and_releases(_seconds: float) -> None:
        sleeps.append(_seconds)
        if len(sleeps) == 1:  # what the holder does: its fill, then its release
            captured = store.capture(tags)
            assert captured is not None
            call_module.compute(locked, store, key, tags, captured[1], (1,), {})
            store.delete(_lock_key(store, key))
        real_sleep(0)

    monkeypatch.setattr(flights_module.time, "sleep", other_process_stores_and_releases)
    assert locked(1) == "computed 1"  # the holder's value, read while polling
    assert len(seen) == 1 and len(sleeps) == 1


def test_lock_held_elsewhere_that_stores_nothing_is_taken_over(
    cache: DataRoomCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_dataroom_cache import flights as flights_module

    store = _store(cache)
    seen = Counter()

    @cache.memoize(lock=True)
    def locked(x: int) -> int:
        seen.add(x)
        return x

    key = locked.keys.key(store.settings.key_prefix, (1,), {})
    assert store.add(_lock_key(store, key), "other", 5)
    real_sleep = flights_module.time.sleep
    sleeps: list[float] = []

    def other_process_gives_up(_seconds: float) -> None:
        sleeps.append(_seconds)
        if len(sleeps) == 1:
            store.delete(_lock_key(store, key))  # released without storing anything
        real_sleep(0)

    monkeypatch.setattr(flights_module.time, "sleep", other_process_gives_up)
    assert locked(1) == 1 and len(seen) == 1 and len(sleeps) == 1
    assert store.add(_lock_key(store, key), "probe", 5)  # and released it
    assert locked(1) == 1 and len(seen) == 1


def _lock_key(store: CacheStore, key: str) -> str:
    prefix = store.settings.key_prefix
    return f"{prefix}:~lock:{key[len(prefix) + 1 :]}"


# -- stale-while-revalidate -----------------------------------------------------------------
class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1_000_000.0
        monkeypatch.setattr(call_module.time, "time", lambda: self.now)


def test_stale_while_revalidate(cache: DataRoomCache, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    store = _store(cache)
    seen = Counter()

    @cache.memoize(timeout=10, stale_while_revalidate=300)
    def load(x: int) -> int:
        seen.add(x)
        return len(seen)

    assert load(1) == 1
    clock.now += 5
    assert load(1) == 1 and len(seen) == 1  # fresh
    clock.now += 10  # past the soft expiry
    key = load.keys.key(store.settings.key_prefix, (1,), {})
    assert store.flights.lead(key) is None  # another caller is refreshing it
    try:
        assert load(1) == 1 and len(seen) == 1  # served stale
    finally:
        store.flights.done(key)
    assert store.metrics.snapshot()["total"]["stale_hits"] == 1
    assert load(1) == 2 and len(seen) == 2  # this caller refreshes
    assert load(1) == 2 and len(seen) == 2  # fresh again
