"""Custom types (issue 15): ``cache.register_type(cls, encode, decode, *, name=None)``.

A registered class round-trips to its own type through a named marker; the registry is
one ``DataRoomCache``'s (two apps with their own extension never see each other's types);
an unregistered class raises at ``set`` time, naming it and saying how to register it; a
stored type name this process does not know (another app version wrote it) is a miss.
Decoding never runs anything but the ``decode`` function registered for the name.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

import flask_dataroom_cache.serialization as codec_module
from flask_dataroom_cache import (
    DataRoomCache,
    cache_get,
    cache_set,
    get_or_set,
)
from flask_dataroom_cache.customtypes import Codec
from flask_dataroom_cache.serialization import CodecError, decode, encode

from .conftest import REDIS_KINDS, store_of


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Owner:
    name: str
    since: date


@dataclasses.dataclass
class Document:
    title: str
    price: Decimal
    owner: Owner
    corners: list[Point]
    meta: dict[str, Any]
    created: datetime = dataclasses.field(default_factory=lambda: datetime(2024, 1, 1))
    #: not an __init__ argument: never stored, recomputed by __post_init__
    slug: str = dataclasses.field(init=False, default="")

    def __post_init__(self) -> None:
        self.slug = self.title.lower().replace(" ", "-")


class Money:
    """A plain class: needs an explicit encode/decode."""

    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount = amount
        self.currency = currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.amount, self.currency) == (
            other.amount,
            other.currency,
        )

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))

    def to_json(self) -> dict[str, Any]:
        return {"amount": self.amount, "currency": self.currency}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Money:
        return cls(data["amount"], data["currency"])


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Percent(Decimal):
    """A subclass of a built-in type: registrable, comes back as itself."""


class Unregistered:
    pass


def ext_of(app: Flask) -> DataRoomCache:
    return DataRoomCache.state(app).extension


def register_all(ext: DataRoomCache) -> None:
    ext.register_type(Point)
    ext.register_type(Owner)
    ext.register_type(Document)
    ext.register_type(Money, Money.to_json, Money.from_json)
    ext.register_type(Color, lambda c: c.value, Color)
    ext.register_type(Percent, str, Percent)


DOCUMENT = Document(
    title="Annual Report",
    price=Decimal("19.90"),
    owner=Owner("ana", date(2020, 5, 1)),
    corners=[Point(0, 0), Point(3, 4)],
    meta={"fee": Money(Decimal("1.10"), "EUR"), "color": Color.BLUE, "n": [1, None]},
)


# -- round trips through every backend (memory, fakeredis, real Redis) -----------------


@pytest.mark.parametrize(
    "value",
    [
        Point(1, 2),
        [Point(1, 2), Point(3, 4)],  # a list of dataclasses
        {"total": Decimal("10.50"), "where": Point(5, 6)},  # a dict with a Decimal
        DOCUMENT,  # nested: dataclasses in dataclasses, Decimal, datetime, a plain class
        Money(Decimal("2.50"), "USD"),
        Color.RED,
        Percent("12.5"),
        {"big": [Point(i, i) for i in range(300)]},  # compressed
        {"__drc__": "type", "n": f"{__name__}.Point", "v": {"x": 1, "y": 2}},  # a user dict
    ],
    ids=lambda v: type(v).__name__,
)
def test_registered_types_round_trip(app: Flask, value: Any) -> None:
    register_all(ext_of(app))
    assert cache_get("k") is None
    assert cache_set("k", value, tags=["doc:1"])
    back = cache_get("k", ["doc:1"])
    assert back == value
    assert type(back) is type(value)
    assert back is not value or isinstance(value, enum.Enum)  # decoded, not shared


def test_nested_values_keep_their_types(app: Flask) -> None:
    register_all(ext_of(app))
    assert cache_set("doc", DOCUMENT)
    back = cache_get("doc")
    assert isinstance(back.owner, Owner) and isinstance(back.owner.since, date)
    assert [type(c) for c in back.corners] == [Point, Point]
    assert back.price.as_tuple() == Decimal("19.90").as_tuple()  # exponent kept
    assert type(back.meta["fee"]) is Money and back.meta["fee"].amount == Decimal("1.10")
    assert back.meta["color"] is Color.BLUE
    assert back.slug == "annual-report"  # init=False field rebuilt, not stored


def test_get_or_set_caches_a_dataclass(app: Flask) -> None:
    register_all(ext_of(app))
    calls: list[int] = []

    def compute() -> list[Point]:
        calls.append(1)
        return [Point(7, 8)]

    assert get_or_set("pts", compute, tags=["p"]) == [Point(7, 8)]
    assert get_or_set("pts", compute, tags=["p"]) == [Point(7, 8)]
    assert len(calls) == 1


def test_decorator_forms(make_app: Callable[..., tuple[Flask, DataRoomCache]]) -> None:
    app, ext = make_app()

    @ext.register_type
    @dataclasses.dataclass
    class Tag:
        label: str

    @ext.register_type(name="shape.v1")
    @dataclasses.dataclass
    class Shape:
        sides: int

    assert ext.codec.name_of(Tag) == f"{__name__}.{Tag.__qualname__}"
    assert ext.codec.name_of(Shape) == "shape.v1"
    with app.app_context():
        assert cache_set("t", [Tag("a"), Shape(3)])
        assert cache_get("t") == [Tag("a"), Shape(3)]
    assert b'"shape.v1"' in ext.codec.encode(Shape(3))


# -- errors at set time ----------------------------------------------------------------


def test_unknown_type_raises_at_set_naming_it(app: Flask) -> None:
    register_all(ext_of(app))
    with pytest.raises(TypeError) as info:
        cache_set("k", {"ok": Point(1, 2), "bad": [Unregistered()]})
    message = str(info.value)
    assert f"{__name__}.Unregistered" in message
    assert "register_type(Unregistered" in message
    assert cache_get("k") is None  # nothing stored
    with pytest.raises(TypeError, match="Unregistered"):
        get_or_set("k2", Unregistered)


def test_unregistered_dataclass_is_not_silently_stringified(app: Flask) -> None:
    with pytest.raises(TypeError, match=r"Point.*register_type\(Point"):
        cache_set("k", Point(1, 2))


def test_unregistered_subclass_of_a_registered_class_raises(app: Flask) -> None:
    register_all(ext_of(app))

    class Euro(Money):
        pass

    with pytest.raises(TypeError, match="Euro"):
        cache_set("k", Euro(Decimal(1), "EUR"))


def test_an_encoder_returning_its_own_type_is_refused(app: Flask) -> None:
    ext_of(app).register_type(Money, lambda m: m, Money.from_json)
    with pytest.raises(TypeError, match=r"encode.*Money"):
        cache_set("k", Money(Decimal(1), "EUR"))


# -- reads of names this process does not know: misses, never crashes ----------------


def _write_raw(app: Flask, key: str, payload: bytes, tags: list[str]) -> None:
    backend = store_of(app).backend
    backend.set(key, payload, 60, tuple(tags), backend.versions(tuple(tags)))


def test_unregistered_type_name_on_read_is_a_miss(app: Flask) -> None:
    ext = ext_of(app)
    register_all(ext)
    other = Codec()  # another version of the app: Point registered under another name
    other.register(Point, name="geometry.Point.v2")
    _write_raw(app, "k", other.encode({"p": Point(1, 2)}), ["t"])
    store = store_of(app)
    errors = store.metrics.snapshot()["total"]["errors"]
    assert cache_get("k", ["t"]) is None
    assert store.metrics.snapshot()["total"]["errors"] == errors + 1
    # the store's decode-error path dropped the entry: a fill works again
    assert cache_set("k", {"p": Point(1, 2)}, tags=["t"])
    assert cache_get("k", ["t"]) == {"p": Point(1, 2)}


def test_a_failing_decode_function_is_a_miss(app: Flask) -> None:
    """The class changed shape since the entry was written (a field renamed)."""
    other = Codec()
    other.register(Point, lambda p: {"x": p.x, "why": p.y}, name=f"{__name__}.Point")
    _write_raw(app, "k", other.encode(Point(1, 2)), [])
    ext_of(app).register_type(Point)
    assert cache_get("k") is None


def test_another_app_without_the_type_reads_a_miss(
    make_app: Callable[..., tuple[Flask, DataRoomCache]], cache_kind: str
) -> None:
    """Two processes (versions) on one Redis prefix: the one without the type misses."""
    if cache_kind not in REDIS_KINDS:
        pytest.skip("two apps share entries only through Redis")
    writer, writer_ext = make_app()
    reader, _ = make_app()
    writer_ext.register_type(Point)
    with writer.app_context():
        assert cache_set("shared", [Point(1, 2)], tags=["t"])
        assert cache_get("shared", ["t"]) == [Point(1, 2)]
    with reader.app_context():
        assert cache_get("shared", ["t"]) is None
        assert cache_set("shared", [1, 2], tags=["t"])  # the reader refills with its own


def test_without_a_codec_or_app_a_custom_marker_is_a_codec_error() -> None:
    codec = Codec()
    codec.register(Point)
    payload = codec.encode(Point(1, 2))
    assert codec.decode(payload) == Point(1, 2)
    with pytest.raises(CodecError, match="Point"):
        decode(payload)  # no app context, no codec: the name is unknown here
    with pytest.raises(TypeError, match="register_type"):
        encode(Point(1, 2))


# -- the registry: one per DataRoomCache, names unique ------------------------------


def test_two_apps_do_not_share_registrations(
    make_app: Callable[..., tuple[Flask, DataRoomCache]],
) -> None:
    app1, ext1 = make_app()
    app2, ext2 = make_app()

    @dataclasses.dataclass
    class Other:
        label: str

    ext1.register_type(Point, name="shared-name")
    ext2.register_type(Other, name="shared-name")  # no clash: another registry
    with app1.app_context():
        assert cache_set("a", Point(1, 2))
        assert cache_get("a") == Point(1, 2)
        with pytest.raises(TypeError, match="Other"):
            cache_set("b", Other("x"))
    with app2.app_context():
        assert cache_set("a", Other("x"))
        assert cache_get("a") == Other("x")
        with pytest.raises(TypeError, match="Point"):
            cache_set("b", Point(1, 2))


def test_a_store_uses_its_own_apps_types_in_any_context(
    make_app: Callable[..., tuple[Flask, DataRoomCache]],
) -> None:
    app1, ext1 = make_app()
    app2, _ = make_app()
    ext1.register_type(Point)
    store1 = store_of(app1)
    with app2.app_context():  # another app's context: still app1's types for app1's store
        assert store1.set("p", Point(1, 2))
        assert store1.get("p") == Point(1, 2)
    assert store1.set("q", [Point(3, 4)])  # no app context at all
    assert store1.get("q") == [Point(3, 4)]


def test_one_extension_serves_its_types_to_each_of_its_apps(
    cache_config: dict[str, Any],
) -> None:
    ext = DataRoomCache()
    ext.register_type(Point)
    apps = []
    for n in range(2):
        app = Flask(f"multi{n}")
        app.config.update(TESTING=True, **cache_config)
        app.config["CACHE_KEY_PREFIX"] = f"{cache_config['CACHE_KEY_PREFIX']}-{n}"
        ext.init_app(app)
        apps.append(app)
    for app in apps:
        with app.app_context():
            assert cache_set("p", Point(1, 2))
            assert cache_get("p") == Point(1, 2)


def test_a_name_registered_for_two_classes_raises() -> None:
    ext = DataRoomCache()

    @dataclasses.dataclass
    class A:
        v: int

    @dataclasses.dataclass
    class B:
        v: int

    ext.register_type(A, name="thing")
    with pytest.raises(ValueError, match=r"'thing'.*already registered"):
        ext.register_type(B, name="thing")
    with pytest.raises(ValueError, match="already registered"):
        ext.register_type(A, name="another")  # one class, one name
    ext.register_type(A, name="thing")  # the same registration again: fine (app factories)
    assert ext.codec.name_of(A) == "thing"


def test_default_name_is_the_qualified_name() -> None:
    codec = Codec()
    codec.register(Point)
    assert codec.name_of(Point) == f"{__name__}.Point"
    assert codec.name_of(Owner) is None


@pytest.mark.parametrize(
    ("cls", "match"),
    [
        (dict, "JSON"),
        (str, "JSON"),
        (bool, "JSON"),
        (tuple, "JSON"),
        (Decimal, "built in"),
        (datetime, "built in"),
        (bytes, "built in"),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_types_the_codec_already_handles_are_refused(cls: type, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        Codec().register(cls, str, cls)


def test_a_plain_class_needs_encode_and_decode() -> None:
    with pytest.raises(TypeError, match="encode and decode"):
        Codec().register(Money)
    with pytest.raises(TypeError, match="callable"):
        Codec().register(Money, "to_json", Money.from_json)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="class"):
        Codec().register(Money(Decimal(1), "x"), str, str)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        Codec().register(Point, name="")


# -- the hit path of values without custom types is untouched -----------------------


def test_only_entries_with_custom_types_get_the_t_flag() -> None:
    codec = Codec()
    codec.register(Point)
    codec.register(Owner)
    plain = {"a": datetime(2024, 1, 1), "b": [1, 2]}
    assert codec.encode(plain) == encode(plain)  # byte for byte what it was
    assert codec.encode(plain)[:1] == b"X" and codec.encode({"b": 1})[:1] == b"J"
    assert codec.encode(Point(1, 2))[:1] == b"T"
    many = [Point(i, i) for i in range(300)]
    payloads = [codec.encode(many, 64, zstd=False)]
    assert payloads[0][:1] == b"t"
    if codec_module.HAVE_ZSTD:
        payloads.append(codec.encode(many, 64, zstd=True))
        assert payloads[1][:2] == b"zT"
    for payload in payloads:
        assert codec.decode(payload) == many
    odd = Owner("lone \ud800 surrogate", date(2020, 1, 1))  # the ASCII-escaped path
    payload = codec.encode(odd)
    assert payload[:1] == b"T" and codec.decode(payload) == odd


def test_plain_values_never_look_for_a_registry(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store holds its app's codec; values without custom types never consult it on a
    read (``J``/``X`` entries decode as before), and JSON-only values not on a write."""
    codec = ext_of(app).codec
    register_all(ext_of(app))
    assert cache_set("plain", {"a": [1, 2], "when": datetime(2024, 1, 1, tzinfo=UTC)})
    assert cache_set("json", {"a": [1, 2]})

    class Boom(dict[Any, Any]):
        def get(self, *_: Any) -> Any:
            raise AssertionError("the registry was consulted for a value without custom types")

    def boom(_obj: Any) -> Any:
        raise AssertionError("the registry decoded an entry without custom types")

    monkeypatch.setattr(codec, "_hook", boom)
    assert cache_get("json") == {"a": [1, 2]}
    assert cache_get("plain") == {"a": [1, 2], "when": datetime(2024, 1, 1, tzinfo=UTC)}
    monkeypatch.setattr(codec, "_by_class", Boom())
    assert cache_set("plain2", {"b": "x"})


# -- models of validation libraries (skipped where they are not installed) -----------


def test_pydantic_model_round_trip(app: Flask) -> None:
    pydantic = pytest.importorskip("pydantic")

    class User(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        id: int
        email: str
        balance: Decimal
        joined: datetime

    ext_of(app).register_type(User, lambda u: u.model_dump(mode="json"), User.model_validate)
    user = User(id=1, email="a@example.org", balance=Decimal("3.30"), joined=datetime(2024, 2, 1))
    assert cache_set("u", {"users": [user]})
    back = cache_get("u")
    assert back == {"users": [user]} and type(back["users"][0]) is User


def test_msgspec_struct_round_trip(app: Flask) -> None:
    msgspec = pytest.importorskip("msgspec")

    class Item(msgspec.Struct):  # type: ignore[misc,name-defined]
        sku: str
        qty: int

    ext_of(app).register_type(Item, msgspec.to_builtins, lambda d: msgspec.convert(d, Item))
    assert cache_set("i", [Item("a", 1), Item("b", 2)])
    assert cache_get("i") == [Item("a", 1), Item("b", 2)]


# -- subclasses of JSON types (enums with a str/int mixin...): registered, or refused ------


class Size(str, enum.Enum):  # noqa: UP042  # the str mixin: JSON writes and reads "s"
    S = "s"
    M = "m"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    READ = "read"


class Perm(enum.IntFlag):
    R = 4
    W = 2


class UserId(str):
    pass


class Cents(int):
    pass


class Ratio(float):
    pass


Pair = collections.namedtuple("Pair", "a b")

JSON_SUBCLASS_VALUES = [
    Size.S,
    Level.HIGH,
    Mode.READ,
    Perm.R | Perm.W,
    UserId("u1"),
    Cents(250),
    Ratio(0.5),
    collections.OrderedDict(a=1, b=2),
    Pair(1, 2),
]


def register_json_subclasses(ext: DataRoomCache) -> None:
    for member in (Size, Level, Mode, Perm):
        ext.register_type(member)  # enums: by value, no functions needed
    ext.register_type(UserId, str, UserId)
    ext.register_type(Cents, int, Cents)
    ext.register_type(Ratio, float, Ratio)
    ext.register_type(collections.OrderedDict, lambda d: list(d.items()), collections.OrderedDict)
    ext.register_type(Pair, lambda p: p._asdict(), lambda d: Pair(**d))


@pytest.mark.parametrize("value", JSON_SUBCLASS_VALUES, ids=lambda v: type(v).__name__)
def test_an_unregistered_json_subclass_is_refused_at_set(app: Flask, value: Any) -> None:
    """Never a silent flattening: ``Size.S`` would come back as ``"s"``, ``Level.HIGH`` as
    ``2``, a namedtuple as a list; the error names the class and ``register_type``."""
    name = type(value).__name__
    for where in (value, {"rows": [1, value]}, [{"x": value}]):
        with pytest.raises(TypeError, match=rf"{name}.*subclass of .*register_type\({name}"):
            cache_set("k", where)
        assert cache_get("k") is None  # nothing stored
    with pytest.raises(TypeError, match=name):
        get_or_set("k2", lambda: value)


def test_a_json_subclass_as_a_dict_key_is_refused(app: Flask) -> None:
    register_json_subclasses(ext_of(app))  # registered or not: a key is stored as a string
    with pytest.raises(TypeError, match=r"dict key of type .*Size"):
        cache_set("k", {Size.S: 1})
    with pytest.raises(TypeError, match=r"dict key of type .*Level"):
        cache_set("k", {"when": datetime(2024, 1, 1), "by": {Level.LOW: "x"}})  # marked path
    assert cache_get("k") is None
    assert cache_set("k", {Size.S.value: 1, 2: "two"})  # plain keys: as documented


@pytest.mark.parametrize("value", JSON_SUBCLASS_VALUES, ids=lambda v: type(v).__name__)
def test_a_registered_json_subclass_round_trips(app: Flask, value: Any) -> None:
    register_json_subclasses(ext_of(app))
    assert cache_set("k", {"v": value, "in": [value]})
    back = cache_get("k")
    assert type(back["v"]) is type(value) and back["v"] == value
    assert type(back["in"][0]) is type(value)
    if isinstance(value, enum.Enum):
        assert back["v"] is value


def test_an_enum_with_values_json_would_change_needs_functions() -> None:
    class Corner(enum.Enum):
        TOP = (0, 1)  # a tuple comes back a list: Corner([0, 1]) would fail

    with pytest.raises(TypeError, match=r"TOP.*give encode and decode"):
        Codec().register(Corner)
    Codec().register(Corner, lambda c: c.name, lambda n: Corner[n])


def test_memoize_caches_a_registered_enum_and_warns_for_an_unregistered_one(
    make_app: Callable[..., tuple[Flask, DataRoomCache]], caplog: pytest.LogCaptureFixture
) -> None:
    app, ext = make_app()
    calls: list[str] = []

    @ext.memoize()
    def level(name: str) -> Level:
        calls.append(name)
        return Level[name]

    with app.app_context():
        with caplog.at_level(logging.WARNING, "flask_dataroom_cache"):
            assert level("HIGH") is Level.HIGH
            assert level("HIGH") is Level.HIGH
        assert calls == ["HIGH", "HIGH"]  # not stored: it would come back a plain int
        assert "register_type" in caplog.text
        ext.register_type(Level)
        assert level("LOW") is Level.LOW
        assert level("LOW") is Level.LOW
        assert calls == ["HIGH", "HIGH", "LOW"]
