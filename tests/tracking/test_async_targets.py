"""What ``track_session`` accepts from SQLAlchemy's asyncio extension (issue 14), and its
detach: the listeners go on the sync objects an ``AsyncSession`` wraps.

The transaction scenarios themselves run on an ``AsyncSession`` in ``test_semantics.py``
(``any_env``); here: each kind of target is tracked, a class is refused, the session
factory set on an ``async_sessionmaker`` is undone by ``uninstall``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import sessionmaker

from flask_dataroom_cache import entity_tag
from flask_dataroom_cache.tracking import tracker_for
from flask_dataroom_cache.tracking.session import SESSION_EVENTS

from .conftest import Env, sqlite_fk
from .models import Folder
from .test_semantics import seed

pytest.importorskip("greenlet")
pytest.importorskip("aiosqlite")
asyncio_ext = pytest.importorskip("sqlalchemy.ext.asyncio")


def _engine(tmp_path: Any) -> Any:
    engine = asyncio_ext.create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    sqlite_fk(engine.sync_engine)
    return engine


async def _create(engine: Any) -> None:
    from .models import Base

    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


async def _rename(session: Any) -> None:
    session.add(Folder(id=7, data_room_id=1, name="x"))
    await session.commit()


@pytest.mark.parametrize(
    "make_target",
    [
        lambda e: asyncio_ext.async_sessionmaker(e),
        lambda e: asyncio_ext.async_sessionmaker(e, sync_session_class=sessionmaker()),
        lambda e: asyncio_ext.async_scoped_session(
            asyncio_ext.async_sessionmaker(e), scopefunc=asyncio.current_task
        ),
        lambda e: asyncio_ext.AsyncSession(e),
    ],
    ids=["async_sessionmaker", "with sync_session_class", "async_scoped_session", "AsyncSession"],
)
def test_each_asyncio_target_is_tracked(
    env: Env, tmp_path: Any, make_target: Callable[[Any], Any]
) -> None:
    engine = _engine(tmp_path)
    asyncio.run(_create(engine))
    target = make_target(engine)
    env.cache.track_session(target, app=env.app)

    async def main() -> None:
        from .models import DataRoom

        session = target if isinstance(target, asyncio_ext.AsyncSession) else target()
        session.add(DataRoom(id=1, name="r"))
        await session.flush()
        env.backend.reset()
        await _rename(session)
        await session.close()
        await engine.dispose()

    asyncio.run(main())
    assert entity_tag("folder", 7) in env.backend.all_invalidated()


def test_a_class_is_refused(env: Env) -> None:
    with pytest.raises(TypeError, match="not a class"):
        env.cache.track_session(asyncio_ext.AsyncSession, app=env.app)


def test_uninstall_undoes_the_session_factory_it_set(env: Env, tmp_path: Any) -> None:
    seed(env)
    engine = _engine(tmp_path)
    maker = asyncio_ext.async_sessionmaker(engine)
    assert "sync_session_class" not in maker.kw
    env.cache.track_session(maker, app=env.app)
    sync_maker = maker.kw["sync_session_class"]
    assert isinstance(sync_maker, sessionmaker)
    tracker = tracker_for(env.cache, env.app)
    listener = tracker.session_events.on_after_flush
    assert all(
        event.contains(sync_maker, name, getattr(tracker.session_events, method))
        for name, method in SESSION_EVENTS.items()
    )
    env.cache.uninstall(env.app)
    assert "sync_session_class" not in maker.kw
    assert not event.contains(sync_maker, "after_flush", listener)
    asyncio.run(engine.dispose())


def test_two_apps_share_the_session_factory_until_the_last_uninstalls(
    make_env: Callable[..., Env], tmp_path: Any
) -> None:
    """The first app's uninstall must not restore the original factory under the
    second: the second keeps tracking commits, and the last uninstall restores it."""
    first, second = make_env(), make_env()
    engine = _engine(tmp_path)
    asyncio.run(_create(engine))
    maker = asyncio_ext.async_sessionmaker(engine)
    first.cache.track_session(maker, app=first.app)
    second.cache.track_session(maker, app=second.app)
    shared = maker.kw["sync_session_class"]
    first.cache.uninstall(first.app)
    assert maker.kw.get("sync_session_class") is shared

    async def write(folder_id: int) -> None:
        from .models import DataRoom

        async with maker() as session:
            if folder_id == 7:
                session.add(DataRoom(id=1, name="r"))
            session.add(Folder(id=folder_id, data_room_id=1, name="x"))
            await session.commit()

    second.backend.reset()
    asyncio.run(write(7))
    assert entity_tag("folder", 7) in second.backend.all_invalidated()
    second.cache.uninstall(second.app)
    assert "sync_session_class" not in maker.kw
    asyncio.run(write(8))  # tracked by no app: nothing sent, nothing fails
    asyncio.run(engine.dispose())
