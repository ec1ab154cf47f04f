"""Tasks of one event loop writing through ``AsyncSession`` and reading through
``aget_or_set`` (issue 14).

* Writers and readers are tasks interleaved at every await, in one thread: a writer
  publishes a file's version once ``await session.commit()`` returned; every read a reader
  starts afterwards must be at least that new, and at rest the cache agrees with the
  database.
* The per-task rule: one task's open transaction with changes makes *its* reads bypass
  and defers *its* ``invalidate_tags``; another task of the same loop reads and fills the
  cache as usual, and its invalidations go out at once (not into the first task's
  transaction, which may roll back).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from flask_dataroom_cache import (
    MISSING,
    aget_or_set,
    contents_tag,
    dataroom_tag,
    entity_tag,
    get_cache_key,
    invalidate_tags,
)
from flask_dataroom_cache.tracking.unitofwork import Unit, Units

from .conftest import Env, sqlite_fk
from .models import DataRoom, File, Folder

pytest.importorskip("greenlet")

WRITERS = 2
READERS = 3
FILES_PER_WRITER = 3
COMMITS_PER_WRITER = 25
FOLDERS = (10, 20)
TIMEOUT = 120


@pytest.fixture
def async_maker(env: Env, database_url: str) -> Iterator[Any]:
    """A tracked ``async_sessionmaker`` on the env's database (async driver)."""
    pytest.importorskip("aiosqlite" if database_url.startswith("sqlite") else "psycopg")
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from .asyncenv import async_url

    engine = create_async_engine(async_url(database_url))
    sqlite_fk(engine.sync_engine)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    env.cache.track_session(maker, app=env.app)
    yield maker
    asyncio.run(engine.dispose())


def _version(name: str) -> tuple[int, int]:
    file_part, version = name.split("-v")
    return int(file_part[1:]), int(version)


def _seed(env: Env) -> dict[int, int]:
    s = env.session
    s.add(DataRoom(id=1, name="R"))
    s.add_all([Folder(id=f, data_room_id=1, name=f"d{f}") for f in FOLDERS])
    s.flush()
    files = [100 + w * 10 + i for w in range(WRITERS) for i in range(FILES_PER_WRITER)]
    for n, fid in enumerate(files):
        s.add(File(id=fid, data_room_id=1, folder_id=FOLDERS[n % 2], name=f"f{fid}-v0"))
    s.commit()
    env.backend.reset()
    return dict.fromkeys(files, 0)


def test_tasks_reading_after_a_commit_never_see_older_data(env: Env, async_maker: Any) -> None:
    committed = _seed(env)
    errors: list[str] = []
    done = asyncio.Event()

    async def folder_files(folder: int) -> list[str]:
        async def fresh() -> list[str]:
            async with async_maker() as s:
                q = sa.select(File.name).where(File.folder_id == folder)
                return sorted((await s.scalars(q)).all())

        key = get_cache_key("afiles", folder)
        return await aget_or_set(key, fresh, tags=[contents_tag(folder), dataroom_tag(1)])

    async def file_name(fid: int) -> str:
        async def fresh() -> str:
            async with async_maker() as s:
                return (await s.scalar(sa.select(File.name).where(File.id == fid))) or ""

        key = get_cache_key("afile", fid)
        return await aget_or_set(key, fresh, tags=[entity_tag("file", fid)])

    async def writer(w: int) -> None:
        rng = random.Random(w)
        for _ in range(COMMITS_PER_WRITER):
            fid = 100 + w * 10 + rng.randrange(FILES_PER_WRITER)
            for attempt in range(200):
                try:
                    async with async_maker() as s:
                        f = await s.get(File, fid)
                        assert f is not None
                        version = _version(f.name)[1]
                        f.name = f"f{fid}-v{version + 1}"
                        if rng.random() < 0.5:
                            f.folder_id = FOLDERS[1] if f.folder_id == FOLDERS[0] else FOLDERS[0]
                        await s.flush()
                        await asyncio.sleep(0)  # other tasks run while this one is dirty
                        await s.commit()
                    break
                except sa.exc.OperationalError as exc:  # SQLite: another writer's lock
                    if "locked" not in str(exc) or attempt == 199:
                        raise
                    await asyncio.sleep(0.001 * rng.randint(1, 10))
            committed[fid] = version + 1  # published once commit() returned
            await asyncio.sleep(0)

    async def reader(r: int) -> None:
        rng = random.Random(100 + r)
        while not done.is_set():
            expected = dict(committed)
            if rng.random() < 0.5:
                seen = [n for folder in FOLDERS for n in await folder_files(folder)]
            else:
                seen = [await file_name(fid) for fid in expected]
            for name in seen:
                fid, version = _version(name)
                if version < expected[fid]:
                    errors.append(f"reader {r} saw {name}, committed v{expected[fid]}")
            await asyncio.sleep(0)

    async def main() -> None:
        readers = [asyncio.create_task(reader(r)) for r in range(READERS)]
        try:
            await asyncio.wait_for(asyncio.gather(*(writer(w) for w in range(WRITERS))), TIMEOUT)
        finally:
            done.set()
            await asyncio.wait_for(asyncio.gather(*readers), TIMEOUT)
        # at rest, every cached read agrees with the database
        async with async_maker() as s:
            for folder in FOLDERS:
                q = sa.select(File.name).where(File.folder_id == folder)
                assert await folder_files(folder) == sorted((await s.scalars(q)).all())
            for fid in committed:
                assert await file_name(fid) == f"f{fid}-v{committed[fid]}"

    asyncio.run(main())
    assert not errors, errors[:5]
    totals = env.store.metrics.snapshot()["total"]
    assert totals["hits"] > 0 and totals["sets"] > 0


def test_one_tasks_open_changes_leave_the_other_tasks_alone(env: Env, async_maker: Any) -> None:
    _seed(env)
    key = get_cache_key("afiles", 10)
    tags = [contents_tag(10)]
    dirty = asyncio.Event()
    checked = asyncio.Event()

    async def writer() -> None:
        async with async_maker() as s:
            f = await s.get(File, 100)
            assert f is not None
            f.name = "f100-uncommitted"
            await s.flush()
            # this task's own reads bypass (they would see its uncommitted row) ...
            assert env.store.must_bypass()
            invalidate_tags("manual:writer")  # ... and its invalidations wait for commit
            assert "manual:writer" not in env.backend.all_invalidated()
            dirty.set()
            await checked.wait()
            await s.rollback()
        assert "manual:writer" not in env.backend.all_invalidated()  # rolled back: dropped

    async def other() -> None:
        await dirty.wait()
        try:
            assert not env.store.must_bypass()  # another task: no bypass
            assert await aget_or_set(key, lambda: "filled", tags=tags) == "filled"
            assert await aget_or_set(key, lambda: "again", tags=tags) == "filled"  # a hit
            invalidate_tags("manual:other")  # not deferred into the writer's transaction
            assert "manual:other" in env.backend.all_invalidated()
        finally:
            checked.set()

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(writer(), other()), TIMEOUT)

    asyncio.run(main())
    assert "manual:other" in env.backend.all_invalidated()


def test_a_task_with_an_older_snapshot_does_not_fill(env: Env, async_maker: Any) -> None:
    """The snapshot rule, per task: a reader task whose transaction began before another
    task's commit still reads its snapshot (correct for it) but must not store it under
    the new tag versions; a task beginning after the commit fills."""
    from .test_snapshot import snapshot_engine

    engine = async_maker.kw["bind"]
    snapshot_engine(engine.sync_engine)
    _seed(env)
    key = get_cache_key("afile", 100)
    tags = [entity_tag("file", 100)]
    began = asyncio.Event()
    committed = asyncio.Event()

    async def name_in(session: Any) -> str:
        return (await session.scalar(sa.select(File.name).where(File.id == 100))) or ""

    async def reader() -> str:
        async with async_maker() as session:
            assert await name_in(session) == "f100-v0"  # the snapshot is taken
            began.set()
            await committed.wait()
            return await aget_or_set(key, lambda: name_in(session), tags=tags)

    async def writer() -> None:
        await began.wait()
        async with async_maker() as session:
            f = await session.get(File, 100)
            assert f is not None
            f.name = "f100-v1"
            await session.commit()
        committed.set()

    async def main() -> None:
        got, _ = await asyncio.wait_for(asyncio.gather(reader(), writer()), TIMEOUT)
        assert got == "f100-v0"  # its snapshot...
        assert env.backend.calls["set"] == 0  # ...not stored
        fresh = await aget_or_set(key, lambda: _fresh_name(async_maker), tags=tags)
        assert fresh == "f100-v1" and env.backend.calls["set"] == 1

    asyncio.run(main())


async def _fresh_name(async_maker: Any) -> str:
    async with async_maker() as session:
        return (await session.scalar(sa.select(File.name).where(File.id == 100))) or ""


# -- child tasks: one unit of work with the task that made them --------------------------------
#: How a task runs a coroutine in a task of its own (``wait_for`` wraps its argument in a
#: task on Python 3.11; on later versions it awaits it in the same task).
CHILD_KINDS = ["gather", "wait_for", "create_task", "task_group"]


async def _in_child(kind: str, coro: Any) -> Any:
    if kind == "gather":
        (result,) = await asyncio.gather(coro)
        return result
    if kind == "wait_for":
        return await asyncio.wait_for(coro, TIMEOUT)
    if kind == "create_task":
        return await asyncio.create_task(coro)
    async with asyncio.TaskGroup() as group:
        task = group.create_task(coro)
    return task.result()


#: Folder 20's files as ``_seed`` makes them.
FOLDER_20 = ["f101-v0", "f110-v0", "f112-v0"]


async def _names_in(session: Any, folder: int = 10) -> list[str]:
    q = sa.select(File.name).where(File.folder_id == folder)
    return sorted((await session.scalars(q)).all())


@pytest.mark.parametrize("kind", CHILD_KINDS)
def test_a_child_task_shares_its_parents_uncommitted_changes(
    env: Env, async_maker: Any, kind: str
) -> None:
    """A task made by the task holding uncommitted changes (``gather``, ``wait_for``,
    ``create_task``, a ``TaskGroup``) is the same unit of work: its reads through the
    dirty session bypass (nothing stored, so nothing served after the rollback), its
    ``invalidate_tags`` waits for the parent's commit (dropped by its rollback)."""
    _seed(env)
    key = get_cache_key("afiles", 10)
    tags = [contents_tag(10)]

    async def child_read(session: Any) -> list[str]:
        assert env.store.must_bypass()
        invalidate_tags("manual:child")
        return await aget_or_set(key, lambda: _names_in(session), tags=tags)

    async def main() -> None:
        async with async_maker() as s:
            f = await s.get(File, 100)
            assert f is not None
            f.name = "f100-uncommitted"
            await s.flush()
            got = await aget_or_set(key, lambda: _names_in(s), tags=tags)  # bypassed
            assert "f100-uncommitted" in got
            got = await _in_child(kind, child_read(s))
            assert "f100-uncommitted" in got
            assert "manual:child" not in env.backend.all_invalidated()
            await s.rollback()
        assert env.store.get(key, tags, default=MISSING) is MISSING  # nothing was stored
        async with async_maker() as s:
            fresh = await aget_or_set(key, lambda: _names_in(s), tags=tags)
        assert fresh == ["f100-v0", "f102-v0", "f111-v0"]

    asyncio.run(main())
    assert "manual:child" not in env.backend.all_invalidated()


@pytest.mark.parametrize("kind", CHILD_KINDS)
def test_a_child_tasks_own_transaction_is_its_own(env: Env, async_maker: Any, kind: str) -> None:
    """A child task that begins a transaction of its own keeps it to itself: its changes
    bypass its own reads (and still the parent's session's, inherited), not the
    parent's reads, nor a sibling's."""
    _seed(env)
    key = get_cache_key("afiles", 20)
    tags = [contents_tag(20)]
    dirty = asyncio.Event()
    checked = asyncio.Event()

    async def writer() -> None:
        async with async_maker() as s2:
            f = await s2.get(File, 101)
            assert f is not None
            f.name = "f101-uncommitted"
            await s2.flush()
            assert env.store.must_bypass()
            dirty.set()
            await checked.wait()
            await s2.rollback()

    async def sibling() -> None:
        await dirty.wait()
        try:
            assert not env.store.must_bypass()
        finally:
            checked.set()

    async def both() -> None:
        await asyncio.gather(writer(), sibling())

    async def main() -> None:
        async with async_maker() as s:
            assert "f101-v0" in await _names_in(s, 20)  # the parent's transaction: clean
            task = asyncio.ensure_future(_in_child(kind, both()))
            await dirty.wait()
            assert not env.store.must_bypass()  # the child's changes are not the parent's
            assert await aget_or_set(key, lambda: _names_in(s, 20), tags=tags) == FOLDER_20
            await task
        assert env.store.get(key, tags, default=MISSING) == FOLDER_20

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_a_child_with_its_own_transaction_still_sees_the_parents(
    env: Env, async_maker: Any
) -> None:
    _seed(env)
    key = get_cache_key("afiles", 10)
    tags = [contents_tag(10)]

    async def child(parent: Any) -> list[str]:
        async with async_maker() as s2:
            assert "f101-v0" in await _names_in(s2, 20)  # its own (clean) transaction
            return await aget_or_set(key, lambda: _names_in(parent), tags=tags)

    async def main() -> None:
        async with async_maker() as s:
            f = await s.get(File, 100)
            assert f is not None
            f.name = "f100-uncommitted"
            await s.flush()
            assert "f100-uncommitted" in await asyncio.create_task(child(s))
            await s.rollback()
        assert env.store.get(key, tags, default=MISSING) is MISSING

    asyncio.run(main())


def test_a_unit_of_work_does_not_outlive_its_event_loop() -> None:
    """asgiref runs each async view in a new loop, copying the calling thread's context in
    and back out: a unit made in one call must not be found (nor chained onto) in the
    next call's loop, or one request's records would pile up on the next one's."""
    asgiref_sync = pytest.importorskip("asgiref.sync")
    units = Units()

    async def begin() -> Unit:
        return units.own()

    first = asgiref_sync.async_to_sync(begin)()
    assert units.current() is None  # the calling thread: a thread's own record only

    async def look() -> tuple[Unit | None, Unit]:
        return units.current(), units.own()

    current, second = asgiref_sync.async_to_sync(look)()
    assert current is None
    assert second is not first and second.parent is None
