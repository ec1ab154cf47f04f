"""Automatic read dependencies, the read side (issue 17): the exact tags an entry carries.

For every kind of read (``session.get``, an object already in the identity map, lazy
loads, ``selectinload`` / ``joinedload``, a foreign key, ``IN``, a range, ``LIKE``,
``OR``, a join, an aggregate, a subquery, ``text()`` naming its tables, opaque SQL), the
entry stored by ``get_or_set`` without tags (and by a cached view) carries exactly the
dependency tags the rules of ``tracking/reads.py`` give, read from ``entry_stored``. On
every cache kind and database (SQLite; PostgreSQL with ``DATABASE_URL``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import joinedload, selectinload

from flask_dataroom_cache import signals
from flask_dataroom_cache.autotags import AUTO_PREFIXES

from .conftest import Env
from .models import DataRoom, File, Folder, Membership

ROOM = ["~e:datarooms"]


@pytest.fixture
def stored(env: Env) -> Iterator[list[tuple[str, tuple[str, ...]]]]:
    got: list[tuple[str, tuple[str, ...]]] = []

    def receive(sender: Flask, key: str, tags: tuple[str, ...], ttl: int) -> None:
        got.append((key, tags))

    signals.entry_stored.connect(receive, sender=env.app)
    yield got
    signals.entry_stored.disconnect(receive, sender=env.app)


@pytest.fixture
def seeded(env: Env) -> Env:
    s = env.session
    s.add(DataRoom(id=1, name="r1"))
    s.add(DataRoom(id=2, name="r2"))
    s.flush()
    s.add(Folder(id=10, data_room_id=1, name="root"))
    s.flush()
    s.add(Folder(id=11, data_room_id=1, parent_id=10, name="sub"))
    s.add(File(id=100, data_room_id=1, folder_id=10, name="a.txt"))
    s.add(File(id=101, data_room_id=1, folder_id=11, name="b.txt"))
    s.add(Membership(id=1, data_room_id=1, user_id="u1"))
    s.commit()
    s.expunge_all()
    return env


def plain(value: Any) -> Any:
    """Rows as lists (JSON values)."""
    if isinstance(value, list | tuple | sa.Row):
        return [plain(v) for v in value]
    return value


def deps(tags: tuple[str, ...]) -> set[str]:
    return {t for t in tags if t.startswith(AUTO_PREFIXES)}


def s_(env: Env) -> Any:
    return env.session


#: kind -> (computation, the dependency tags its entry carries)
CASES: dict[str, tuple[Callable[[Env], Any], set[str]]] = {
    "session.get": (
        lambda e: s_(e).get(File, 100).name,
        {"~e:files", "~r:files:100"},
    ),
    "session.get missing row": (
        lambda e: s_(e).get(File, 999) is None,
        {"~e:files", "~r:files:999"},
    ),
    "lazy load one-to-many": (
        lambda e: sorted(f.name for f in s_(e).get(Folder, 10).files),
        {"~e:folders", "~r:folders:10", "~e:files", "~c:files:folder_id=10"},
    ),
    "lazy load many-to-one": (
        lambda e: s_(e).get(File, 101).folder.name,
        {"~e:files", "~r:files:101", "~e:folders", "~r:folders:11"},
    ),
    "selectinload": (
        lambda e: [
            len(f.files)
            for f in s_(e).scalars(
                sa.select(Folder).where(Folder.id == 10).options(selectinload(Folder.files))
            )
        ],
        {"~e:folders", "~r:folders:10", "~e:files", "~c:files:folder_id=10"},
    ),
    "joinedload": (
        lambda e: len(s_(e).get(Folder, 10, options=[joinedload(Folder.files)]).files),
        {"~e:folders", "~r:folders:10", "~e:files", "~t:files"},
    ),
    "filter_by foreign key": (
        lambda e: s_(e).scalars(sa.select(File.name).filter_by(folder_id=10)).all(),
        {"~e:files", "~c:files:folder_id=10"},
    ),
    "foreign key IS NULL": (
        lambda e: s_(e).scalars(sa.select(Folder.name).where(Folder.parent_id.is_(None))).all(),
        {"~e:folders", "~c:folders:parent_id=~null"},
    ),
    "foreign key and LIKE": (
        lambda e: s_(e)
        .scalars(sa.select(File.name).where(File.folder_id == 10, File.name.like("a%")))
        .all(),
        {"~e:files", "~c:files:folder_id=10"},
    ),
    "IN on the primary key": (
        lambda e: s_(e).scalars(sa.select(File.name).where(File.id.in_([100, 101]))).all(),
        {"~e:files", "~r:files:100", "~r:files:101"},
    ),
    "range": (
        lambda e: s_(e).scalars(sa.select(File.name).where(File.id > 100)).all(),
        {"~e:files", "~t:files"},
    ),
    "LIKE": (
        lambda e: s_(e).scalars(sa.select(File.name).where(File.name.like("a%"))).all(),
        {"~e:files", "~t:files"},
    ),
    "OR": (
        lambda e: s_(e)
        .scalars(sa.select(File.name).where((File.id == 100) | (File.id == 101)))
        .all(),
        {"~e:files", "~t:files"},
    ),
    "join": (
        lambda e: s_(e)
        .execute(sa.select(File.name, Folder.name).join(Folder).where(Folder.id == 10))
        .all(),
        {"~e:files", "~t:files", "~e:folders", "~r:folders:10"},
    ),
    "aggregate by foreign key": (
        lambda e: s_(e).scalar(
            sa.select(sa.func.count()).select_from(File).where(File.data_room_id == 1)
        ),
        {"~e:files", "~c:files:data_room_id=1"},
    ),
    "aggregate grouped": (
        lambda e: s_(e)
        .execute(sa.select(File.folder_id, sa.func.count()).group_by(File.folder_id))
        .all(),
        {"~e:files", "~t:files"},
    ),
    "subquery": (
        lambda e: s_(e)
        .scalars(
            sa.select(File.name).where(
                File.folder_id.in_(sa.select(Folder.id).where(Folder.name.like("r%")))
            )
        )
        .all(),
        {"~e:files", "~t:files", "~e:folders", "~t:folders"},
    ),
    "the same table in a subquery": (
        lambda e: s_(e)
        .scalars(
            sa.select(File.name).where(
                File.folder_id == 10,
                File.id.in_(sa.select(File.id).where(File.name.like("a%"))),
            )
        )
        .all(),
        {"~e:files", "~t:files"},
    ),
    "EXISTS (a correlated subquery)": (
        lambda e: s_(e)
        .scalars(sa.select(Folder.name).where(Folder.id == 10, Folder.files.any(File.name == "x")))
        .all(),
        {"~e:folders", "~t:folders", "~e:files", "~t:files"},
    ),
    "UNION": (
        lambda e: s_(e)
        .execute(sa.union(sa.select(File.id).where(File.id == 100), sa.select(Folder.id)))
        .all(),
        {"~e:folders", "~t:folders", "~e:files", "~t:files"},
    ),
    "CTE": (
        lambda e: s_(e)
        .execute(sa.select(sa.select(File.id).where(File.folder_id == 10).cte().c.id))
        .all(),
        {"~e:files", "~t:files"},
    ),
    "a textual condition": (
        lambda e: s_(e).scalars(sa.select(File.name).where(sa.text("files.id > 0"))).all(),
        {"~e:files", "~t:files"},
    ),
    "text() naming its tables": (
        lambda e: s_(e)
        .execute(
            sa.text("SELECT f.name FROM files f JOIN folders ON folders.id = f.folder_id")
        )
        .all(),
        {"~e:files", "~t:files", "~e:folders", "~t:folders"},
    ),
    "text().columns()": (
        lambda e: s_(e)
        .execute(sa.text("select name from files, memberships").columns(sa.column("name")))
        .all(),
        {"~e:files", "~t:files", "~e:memberships", "~t:memberships"},
    ),
    "exec_driver_sql": (
        lambda e: s_(e).connection().exec_driver_sql("select name from datarooms").all(),
        {*ROOM, "~t:datarooms"},
    ),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_each_read_kind_carries_its_dependencies(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]], kind: str
) -> None:
    compute, expected = CASES[kind]
    env = seeded
    first = env.store.get_or_set(f"k:{kind}", lambda: plain(compute(env)))
    env.session.rollback()
    assert len(stored) == 1, "the entry is stored"
    assert deps(stored[0][1]) == expected
    # and it is a hit afterwards (the dependency tokens were captured, nothing bumped)
    assert env.store.get_or_set(f"k:{kind}", lambda: pytest.fail("recomputed")) == first


def test_an_object_already_in_the_identity_map_is_read_again(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]]
) -> None:
    """``session.get`` of an object loaded before the computation runs no SQL: the
    computation is isolated from it (the session is expired), so it is read again, and
    recorded. Its loaded relationships too."""
    env = seeded
    folder = env.session.get(Folder, 10)  # loaded before: a before_request hook, g.user
    assert len(folder.files) == 1  # and its collection
    names = env.store.get_or_set(
        "k", lambda: sorted(f.name for f in env.session.get(Folder, 10).files)
    )
    assert names == ["a.txt"]
    assert deps(stored[0][1]) == {
        "~e:folders",
        "~r:folders:10",
        "~e:files",
        "~c:files:folder_id=10",
    }


def test_unflushed_changes_refuse_the_fill(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]]
) -> None:
    """A session holding a change not flushed yet (of a model nobody declared) cannot
    be isolated without losing it: nothing computed now is stored."""
    env = seeded
    env.session.autoflush = False
    folder = env.session.get(Folder, 10)
    folder.name = "renamed, not flushed"
    value = env.store.get_or_set("k", lambda: env.session.get(Folder, 10).name)
    assert value == "renamed, not flushed"
    assert stored == []
    env.session.rollback()


@pytest.mark.parametrize(
    "sql",
    ["select my_procedure(1)", "call refresh_everything()", "select 1; select 2"],
)
def test_opaque_sql_is_never_stored(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]], sql: str
) -> None:
    """SQL whose tables cannot be known: the value is returned, never stored. (The
    statement fails on the database here: what counts is that it was seen first.)"""
    env = seeded

    def compute() -> str:
        try:
            env.session.execute(sa.text(sql)).all()
        except sa.exc.DBAPIError:
            env.session.rollback()
        return "computed"

    assert env.store.get_or_set("k", compute) == "computed"
    assert stored == []
    assert env.store.metrics.counts()[0].get("reads_unknown") == 1


def test_a_function_in_a_core_statement_is_opaque(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]]
) -> None:
    env = seeded

    def compute() -> str:
        try:
            env.session.execute(sa.select(sa.func.secret_lookup(1))).all()
        except sa.exc.DBAPIError:
            env.session.rollback()
        return "x"

    env.store.get_or_set("k", compute)
    assert stored == []


def test_declared_tags_alone_and_ttl_only_capture_nothing(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]]
) -> None:
    env = seeded
    env.store.get_or_set("a", lambda: env.session.get(File, 100).name, tags=["mine"])
    env.store.get_or_set("b", lambda: env.session.get(File, 100).name, tags=[])
    assert [deps(tags) for _, tags in stored] == [set(), set()]
    assert "mine" in stored[0][1]


def test_another_threads_statements_are_not_captured(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]]
) -> None:
    env = seeded
    app = env.app
    started, done = threading.Event(), threading.Event()

    def other() -> None:
        with app.app_context():
            started.wait(5)
            env.db.session.execute(sa.select(Membership.user_id)).all()
            env.db.session.remove()
        done.set()

    thread = threading.Thread(target=other)
    thread.start()

    def compute() -> str:
        started.set()
        done.wait(5)
        return env.session.get(File, 100).name

    env.store.get_or_set("k", compute)
    thread.join(5)
    assert deps(stored[0][1]) == {"~e:files", "~r:files:100"}


def test_a_nested_computation_gives_its_reads_to_the_outer_one(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]]
) -> None:
    """An outer computation calling ``get_or_set``: the inner one is computed (no hit
    could show the outer what it read) and both entries carry its reads."""
    env = seeded
    env.store.get_or_set("inner", lambda: env.session.get(File, 100).name)
    stored.clear()

    def outer() -> list[str]:
        inner = env.store.get_or_set("inner", lambda: env.session.get(File, 100).name)
        return [inner, env.session.get(Folder, 11).name]

    env.store.get_or_set("outer", outer)
    by_key = {k: deps(t) for k, t in stored}
    assert by_key["inner"] == {"~e:files", "~r:files:100"}
    assert by_key["outer"] == {"~e:files", "~r:files:100", "~e:folders", "~r:folders:11"}


def test_too_many_rows_collapse_into_the_table_tag(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]]
) -> None:
    env = seeded

    def compute() -> int:
        return sum(env.session.get(File, i) is not None for i in range(1000, 1070))

    env.store.get_or_set("k", compute)
    assert deps(stored[0][1]) == {"~e:files", "~t:files"}


def test_a_write_during_the_computation_makes_the_entry_dead_on_arrival(
    seeded: Env,
) -> None:
    """The race: a dependency's token is captured before the statement reading it, so a
    write (here its invalidation, as the write side sends it) landing after that
    statement leaves an entry that never hits."""
    env = seeded
    calls = []

    def compute() -> str:
        calls.append(1)
        name = env.session.get(File, 100).name
        env.store.invalidate(["~r:files:100"], defer=False)
        return name

    env.store.get_or_set("k", compute)
    env.store.get_or_set("k", compute)
    assert len(calls) == 2


# -- cached views ---------------------------------------------------------------------------
def add_views(env: Env) -> None:
    from flask import g

    cache, app = env.cache, env.app

    @app.before_request
    def load_folder() -> None:
        g.folder = env.db.session.get(Folder, 10)  # loaded before the view computes

    @app.get("/auto/<int:file_id>")
    @cache.cached(shared=True)
    def auto(file_id: int) -> Any:
        return {"name": env.db.session.get(File, file_id).name, "folder": g.folder.name}

    @app.get("/ttl-only/<int:file_id>")
    @cache.cached(shared=True, tags=[])
    def ttl_only(file_id: int) -> Any:
        return {"name": env.db.session.get(File, file_id).name}

    @app.get("/declared/<int:file_id>")
    @cache.cached(shared=True, tags=lambda file_id: [f"file:{file_id}"])
    def declared(file_id: int) -> Any:
        return {"name": env.db.session.get(File, file_id).name}

    @app.get("/opaque")
    @cache.cached(shared=True)
    def opaque() -> Any:
        try:
            env.db.session.execute(sa.text("select refresh_stats()")).all()
        except sa.exc.DBAPIError:
            env.db.session.rollback()
        return {"ok": True}


def test_a_view_without_tags_depends_on_what_it_read(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]]
) -> None:
    """Also what a before_request hook loaded and the view used without SQL (g.folder)."""
    env = seeded
    add_views(env)
    client = env.app.test_client()
    first = client.get("/auto/100")
    assert first.headers["X-Cache"] == "MISS"
    assert deps(stored[0][1]) == {"~e:files", "~r:files:100", "~e:folders", "~r:folders:10"}
    assert client.get("/auto/100").headers["X-Cache"] == "HIT"


def test_declared_tags_add_to_the_automatic_ones_and_an_empty_list_is_ttl_only(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]]
) -> None:
    env = seeded
    add_views(env)
    client = env.app.test_client()
    client.get("/declared/100")
    client.get("/ttl-only/100")
    declared, ttl_only = stored[0][1], stored[1][1]
    assert "file:100" in declared
    assert deps(declared) == {"~e:files", "~r:files:100"}
    assert deps(ttl_only) == set()


def test_auto_tags_off_keeps_declared_tags_only(make_env: Callable[..., Env]) -> None:
    env = make_env(CACHE_AUTO_TAGS=False)
    got: list[tuple[str, ...]] = []
    signals.entry_stored.connect(lambda s, **kw: got.append(kw["tags"]), sender=env.app, weak=False)
    with env.app.app_context():
        env.store.get_or_set("k", lambda: env.session.scalars(sa.select(File.name)).all())
    assert deps(got[0]) == set()


def test_a_view_reading_opaque_sql_is_not_stored_and_says_why(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]]
) -> None:
    env = seeded
    add_views(env)
    client = env.app.test_client()
    resp = client.get("/opaque")
    assert resp.status_code == 200
    assert resp.headers["X-Cache"] == (
        "MISS; not stored: tables read unknown (function refresh_stats() may read any table)"
    )
    assert stored == []
    assert client.get("/opaque").headers["X-Cache"].startswith("MISS; not stored")
    views = env.cache.state(env.app).views
    assert views is not None
    assert views.refusals[("opaque", "tables read unknown")] == 2


def test_a_recomputation_reads_no_token_again(seeded: Env) -> None:
    """The missing read of an entry stored with automatic dependencies names its tags
    (this process remembers them), so their tokens come with it, read before the
    computation (and the table tags the entry does not carry, in one call): recomputing
    what was read last time reads tokens once, whatever the number of statements."""
    env = seeded
    def compute() -> list[Any]:
        return [
            env.session.get(File, 100).name,
            env.session.get(Folder, 10).name,
            env.session.scalars(sa.select(File.name).where(File.folder_id == 10)).all(),
        ]

    first = env.store.get_or_set("k", compute)
    env.store.invalidate(["~r:files:100"], defer=False)
    env.backend.reset()
    assert env.store.get_or_set("k", compute) == first
    assert env.backend.calls["versions"] == 1  # not one per statement
    assert env.backend.calls["set"] == 1
    calls: list[int] = []
    assert env.store.get_or_set("k", lambda: calls.append(1) or "x") == first
    assert calls == []


def test_memoize_without_tags_depends_on_what_it_read(
    seeded: Env, stored: list[tuple[str, tuple[str, ...]]]
) -> None:
    env = seeded

    @env.cache.memoize()
    def file_name(file_id: int) -> str:
        return str(env.session.get(File, file_id).name)

    @env.cache.memoize(tags=[])
    def file_name_ttl_only(file_id: int) -> str:
        return str(env.session.get(File, file_id).name)

    assert file_name(100) == "a.txt"
    assert file_name_ttl_only(100) == "a.txt"
    auto, ttl_only = stored[0][1], stored[1][1]
    assert deps(auto) == {"~e:files", "~r:files:100"}
    assert deps(ttl_only) == set()
