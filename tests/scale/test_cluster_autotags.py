"""Automatic read dependencies on a real Redis Cluster (issue 17's "Cluster too").

A Flask-SQLAlchemy app (SQLite, and PostgreSQL when ``DATABASE_URL`` is set) with cached
views declaring no tags, on ``REDIS_URL=redis+cluster://...``. An entry's dependency tags
(``~r:`` / ``~c:`` / ``~t:`` / ``~e:``) keep their token copies in the entry's shard group
(``backends/redis/cluster.py``), so:

* a hit is ONE command (``EVALSHA get.lua``) on ONE node: counted on the client (every
  ``execute_command`` and the node it was sent to) and on the servers (``INFO
  commandstats`` of every master after ``CONFIG RESETSTAT``), whatever the tags' names
  would hash to on their own;
* every write path (ORM, Core, textual, an insert matching the read's foreign key) makes
  the next read a MISS with the new data, and a write to a row or room the view did not
  read leaves it a HIT;
* an entry depending on 50 rows (50 ``~r:`` tags, spread over many slots as plain keys)
  is still one round trip, and a write to any one of those rows invalidates it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from redis.crc import key_slot
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flask_dataroom_cache import DataRoomCache
from flask_dataroom_cache.backends.redis import ClusterRedisBackend
from flask_dataroom_cache.backends.resilient import ResilientBackend

from .servers import Cluster

pytestmark = pytest.mark.redis_server

#: Rows of room 1 (ids 1..ROWS); room 2 holds ids 1001..1000+ROWS.
ROWS = 120


class Base(DeclarativeBase):
    pass


class Room(Base):
    __tablename__ = "cat_rooms"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))


class Doc(Base):
    __tablename__ = "cat_docs"
    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(sa.ForeignKey("cat_rooms.id"))
    rank: Mapped[int] = mapped_column()
    name: Mapped[str] = mapped_column(sa.String(50))


@dataclass
class Commands:
    """What the cache sent to the cluster from the test's thread while counting."""

    sent: list[tuple[Any, ...]] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    pipelines: int = 0


class ClusterApp:
    """The app, its views, and ways to count what one request sends to the cluster."""

    def __init__(self, cluster: Cluster, database_url: str) -> None:
        self.cluster = cluster
        app = Flask(f"cat_{uuid.uuid4().hex[:6]}")
        app.config.update(
            TESTING=True,
            SQLALCHEMY_DATABASE_URI=database_url,
            REDIS_URL=cluster.url,
            CACHE_KEY_PREFIX="ca" + uuid.uuid4().hex[:10],
            CACHE_REDIS_SOCKET_TIMEOUT=1.0,
        )
        self.app, self.db, self.cache = app, SQLAlchemy(), DataRoomCache()
        self.db.init_app(app)
        self.cache.init_app(app)
        self._views()
        with app.app_context():
            Base.metadata.create_all(self.db.engine)
            s = self.db.session
            s.add_all([Room(id=1, name="r1"), Room(id=2, name="r2")])
            s.flush()
            for room, base in ((1, 0), (2, 1000)):
                s.add_all(
                    Doc(id=base + i, room_id=room, rank=i, name=f"d{base + i}")
                    for i in range(1, ROWS + 1)
                )
            s.commit()
        store = self.cache.state(app).store
        assert isinstance(store.backend, ResilientBackend)
        primary = store.backend.primary
        assert isinstance(primary, ClusterRedisBackend), type(primary)
        self.backend = primary
        self.client = Client(app)

    def _views(self) -> None:
        db, cache, app = self.db, self.cache, self.app

        @app.get("/doc/<int:doc_id>")
        @cache.cached(timeout=300, shared=True)
        def doc(doc_id: int) -> dict[str, Any]:  # by primary key
            row = db.session.get(Doc, doc_id)
            return {"name": row.name if row else None}

        @app.get("/room/<int:room_id>")
        @cache.cached(timeout=300, shared=True)
        def room(room_id: int) -> dict[str, Any]:  # by foreign key
            q = sa.select(Doc.name).where(Doc.room_id == room_id).order_by(Doc.id)
            return {"names": list(db.session.scalars(q))}

        @app.get("/ranks/<int:lo>/<int:hi>")
        @cache.cached(timeout=300, shared=True)
        def ranks(lo: int, hi: int) -> dict[str, Any]:  # a range: the whole table
            q = sa.select(Doc.name).where(Doc.rank.between(lo, hi)).order_by(Doc.id)
            return {"names": list(db.session.scalars(q))}

        @app.get("/many/<int:n>")
        @cache.cached(timeout=300, shared=True)
        def many(n: int) -> dict[str, Any]:  # n rows by primary key: n ``~r:`` tags
            ids = list(range(1, n + 1))
            q = sa.select(Doc.id, Doc.name).where(Doc.id.in_(ids)).order_by(Doc.id)
            return {"names": [name for _, name in db.session.execute(q)]}

    # -- writes (each one commits) ------------------------------------------------------
    def write(self, how: Callable[[Any], Any]) -> None:
        with self.app.app_context():
            how(self.db.session)
            self.db.session.commit()

    # -- counting -----------------------------------------------------------------------
    def counted(self, path: str) -> tuple[Any, Commands]:
        """GET ``path``, recording every command the cluster client sent meanwhile."""
        rc = self.backend.client
        seen = Commands()
        me = threading.get_ident()
        real_execute, real_node, real_pipeline = (
            rc.execute_command,
            rc._execute_command,
            rc.pipeline,
        )

        def execute(*args: Any, **kw: Any) -> Any:
            if threading.get_ident() == me:
                seen.sent.append(args)
            return real_execute(*args, **kw)

        def to_node(node: Any, *args: Any, **kw: Any) -> Any:
            if threading.get_ident() == me:
                seen.nodes.append(node.name)
            return real_node(node, *args, **kw)

        def pipeline(*args: Any, **kw: Any) -> Any:
            if threading.get_ident() == me:
                seen.pipelines += 1
            return real_pipeline(*args, **kw)

        rc.execute_command, rc._execute_command, rc.pipeline = execute, to_node, pipeline
        try:
            resp = self.client.get(path)
        finally:
            del rc.execute_command, rc._execute_command, rc.pipeline
        return resp, seen

    def server_commands(self, path: str) -> tuple[Any, dict[int, dict[str, int]]]:
        """GET ``path``; the commands each master ran meanwhile (``INFO commandstats``,
        without the INFO / CONFIG of this count)."""
        conns = [redis.Redis(host="127.0.0.1", port=n.port) for n in self.cluster.nodes]
        try:
            for c in conns:
                c.config_resetstat()
            resp = self.client.get(path)
            ran = {}
            for node, c in zip(self.cluster.nodes, conns, strict=True):
                stats = c.info("commandstats")
                ran[node.port] = {
                    name.removeprefix("cmdstat_"): int(v["calls"])
                    for name, v in stats.items()
                    if name not in ("cmdstat_info", "cmdstat_config|resetstat")
                }
        finally:
            for c in conns:
                c.close()
        return resp, {port: cmds for port, cmds in ran.items() if cmds}


class Client:
    """The Flask test client, answering ``(X-Cache, json)``."""

    def __init__(self, app: Flask) -> None:
        self._client = app.test_client()

    def get(self, path: str) -> tuple[str, Any]:
        resp = self._client.get(path)
        assert resp.status_code == 200, resp.data
        return resp.headers.get("X-Cache", ""), resp.get_json()


@pytest.fixture
def capp(redis_cluster: Cluster, database_url: str) -> Iterator[ClusterApp]:
    made = ClusterApp(redis_cluster, database_url)
    try:
        yield made
    finally:
        made.backend.clear()
        with made.app.app_context():
            made.db.session.remove()
            Base.metadata.drop_all(made.db.engine)
            made.db.engine.dispose()
        made.backend.close()


def assert_one_round_trip(capp: ClusterApp, path: str, expected: Any) -> None:
    """A HIT of ``path``: one EVALSHA, sent to one node, and run by one master only."""
    (x_cache, body), seen = capp.counted(path)
    assert (x_cache, body) == ("HIT", expected)
    assert len(seen.sent) == 1 and seen.sent[0][0] == "EVALSHA", seen.sent
    assert len(seen.nodes) == 1, seen.nodes  # no MOVED / ASK / NOSCRIPT retry
    assert seen.pipelines == 0
    (x_cache, body), ran = capp.server_commands(path)
    assert (x_cache, body) == ("HIT", expected)
    # one master ran the one script; the script's own reads are counted too (GET of the
    # entry, one MGET of its tokens, PTTL): no other client command, no write
    assert len(ran) == 1, ran
    (cmds,) = ran.values()
    assert cmds.pop("evalsha") == 1 and set(cmds) <= {"get", "mget", "pttl"}, ran
    assert cmds.get("mget", 0) <= 1 and cmds.get("get", 0) <= 1, ran


def names(ids: Any) -> list[str]:
    return [f"d{i}" for i in ids]


READS: dict[str, dict[str, Any]] = {
    "/doc/1": {"name": "d1"},
    "/room/1": {"names": names(range(1, ROWS + 1))},
    "/ranks/1/3": {"names": names([1, 2, 3, 1001, 1002, 1003])},
}


@pytest.mark.parametrize("path", list(READS))
def test_a_hit_is_one_round_trip_to_one_node(capp: ClusterApp, path: str) -> None:
    assert capp.client.get(path) == ("MISS", READS[path])
    assert_one_round_trip(capp, path, READS[path])
    report = capp.cache.inspect(view=path, app=capp.app)
    tags = {t.tag for t in report.tags}
    assert tags and all(t.startswith("~") for t in tags), tags  # automatic only
    # The entry and each of its tags' token copies share one slot.
    full = capp.backend._full_key(report.key)
    g = capp.backend._group(report.key)
    slots = {key_slot((capp.backend._group_tagv[g] + t).encode()) for t in tags}
    assert slots == {key_slot(full.encode())}


def _orm(s: Any) -> None:
    s.get(Doc, 1).name = "new"


def _core(s: Any) -> None:
    t = cast(sa.Table, Doc.__table__)
    s.connection().execute(sa.update(t).where(t.c.id == 1).values(name="new"))


def _textual(s: Any) -> None:
    s.execute(sa.text("UPDATE cat_docs SET name = 'new' WHERE id = 1"))


def _insert(s: Any) -> None:
    s.add(Doc(id=500, room_id=1, rank=2, name="new"))


WRITES: dict[str, tuple[Callable[[Any], None], dict[str, Any]]] = {
    # how, then what each read returns after it (a MISS with the new data)
    "orm update": (_orm, {"/doc/1": {"name": "new"}}),
    "core update": (_core, {"/doc/1": {"name": "new"}}),
    "textual update": (_textual, {"/doc/1": {"name": "new"}}),
    "insert by fk": (_insert, {}),
}


@pytest.mark.parametrize("how", list(WRITES))
def test_every_write_path_makes_the_next_read_fresh(capp: ClusterApp, how: str) -> None:
    for path, body in READS.items():
        assert capp.client.get(path) == ("MISS", body)
        assert capp.client.get(path) == ("HIT", body)
    write, changed = WRITES[how]
    capp.write(write)
    inserted = how == "insert by fk"
    after = {
        "/doc/1": changed.get("/doc/1", READS["/doc/1"]),
        "/room/1": {"names": ["new" if n == "d1" else n for n in READS["/room/1"]["names"]]},
        "/ranks/1/3": {"names": ["new" if n == "d1" else n for n in READS["/ranks/1/3"]["names"]]},
    }
    if inserted:  # a new row in room 1 with rank 2; doc 1 untouched
        after["/room/1"] = {"names": [*READS["/room/1"]["names"], "new"]}
        after["/ranks/1/3"] = {"names": [*names([1, 2, 3]), "new", *names([1001, 1002, 1003])]}
    for path, body in after.items():
        # the insert leaves doc 1's row tag alone: a HIT (precision)
        expected = "HIT" if inserted and path == "/doc/1" else "MISS"
        assert capp.client.get(path) == (expected, body), (how, path)
        assert capp.client.get(path) == ("HIT", body)


def test_writes_elsewhere_keep_the_entries(capp: ClusterApp) -> None:
    """Precision: a row or room the view did not read changes; its entry stays a HIT."""
    for path in ("/doc/1", "/room/1"):
        assert capp.client.get(path) == ("MISS", READS[path])
    capp.write(lambda s: setattr(s.get(Doc, 1002), "name", "other"))  # room 2's row
    capp.write(lambda s: setattr(s.get(Room, 2), "name", "r2, renamed"))  # another table
    capp.write(lambda s: s.add(Doc(id=900, room_id=2, rank=7, name="x")))  # room 2 insert
    for path in ("/doc/1", "/room/1"):
        assert capp.client.get(path) == ("HIT", READS[path]), path
    # the range read depends on the whole table: a write to any row reaches it
    assert capp.client.get("/ranks/1/3")[0] == "MISS"
    assert_one_round_trip(capp, "/room/1", READS["/room/1"])


@pytest.mark.parametrize("row", [1, 23, 50])
def test_fifty_row_tags_one_round_trip_and_any_row_invalidates(capp: ClusterApp, row: int) -> None:
    path, body = "/many/50", {"names": names(range(1, 51))}
    assert capp.client.get(path) == ("MISS", body)
    assert_one_round_trip(capp, path, body)
    report = capp.cache.inspect(view=path, app=capp.app)
    rows = {t.tag for t in report.tags if t.tag.startswith("~r:")}
    assert len(rows) == 50
    # As plain keys these tags would be spread over many slots, owned by every master.
    spread = {key_slot(f"{capp.backend.prefix}:~tagv:{t}".encode()) for t in rows}
    assert len(spread) > 40
    # a row it did not read: still a HIT
    capp.write(lambda s: setattr(s.get(Doc, 51), "name", "not read"))
    assert capp.client.get(path) == ("HIT", body)
    # any one row it read: a MISS with the new data, then one round trip again
    capp.write(lambda s: setattr(s.get(Doc, row), "name", "changed"))
    fresh = {"names": ["changed" if n == f"d{row}" else n for n in body["names"]]}
    assert capp.client.get(path) == ("MISS", fresh)
    assert_one_round_trip(capp, path, fresh)


def test_more_rows_than_the_bound_collapse_into_the_table_tag(capp: ClusterApp) -> None:
    """100 rows exceed the 64 tags of an entry: the row tags collapse into ``~t:`` (still
    readable in one round trip; any write of the table invalidates it)."""
    path, body = "/many/100", {"names": names(range(1, 101))}
    assert capp.client.get(path) == ("MISS", body)
    assert_one_round_trip(capp, path, body)
    report = capp.cache.inspect(view=path, app=capp.app)
    assert {t.tag for t in report.tags} == {"~epoch", "~e:cat_docs", "~t:cat_docs"}
    capp.write(lambda s: setattr(s.get(Doc, 1001), "name", "elsewhere"))
    assert capp.client.get(path) == ("MISS", body)
