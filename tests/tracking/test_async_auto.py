"""``aget_or_set`` without ``tags``: automatic dependencies, as ``get_or_set`` (issue 17 on
issue 14's path). The computation's statements run by an ``AsyncSession`` in SQLAlchemy's
greenlets are captured; another task's statements are not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flask_dataroom_cache import aget_or_set
from flask_dataroom_cache.testing import capture_entries

from .conftest import Env
from .models import DataRoom, Folder
from .test_async_concurrency import async_maker  # noqa: F401  (the fixture)

pytest.importorskip("greenlet")


def test_aget_or_set_without_tags_depends_on_what_it_read(env: Env, async_maker: Any) -> None:  # noqa: F811
    computed: list[int] = []

    async def main() -> None:
        async with async_maker() as s:
            s.add(DataRoom(id=1, name="r"))
            s.add_all(
                [Folder(id=10, data_room_id=1, name="a"), Folder(id=11, data_room_id=1, name="b")]
            )
            await s.commit()

        async def name_of(folder_id: int) -> str:
            computed.append(folder_id)
            async with async_maker() as s:
                folder = await s.get(Folder, folder_id)
                assert folder is not None
                return folder.name

        async def other_task_reads() -> None:  # runs while the computation awaits
            async with async_maker() as s:
                await s.get(Folder, 11)

        async def read() -> str:
            async def compute() -> str:
                value, _ = await asyncio.gather(name_of(10), other_task_reads())
                return value

            return await aget_or_set("folder-10-name", compute)

        with capture_entries(env.app) as stored:
            assert await read() == "a"
        tags = stored.entries[0].tags
        assert "~r:folders:10" in tags  # what the computation read
        assert "~r:folders:11" in tags  # a task the computation made is part of it
        assert await read() == "a" and computed == [10]  # a hit

        async with async_maker() as s:  # a write to a row it did not read
            await s.execute(Folder.__table__.insert().values(id=12, data_room_id=1, name="c"))
            await s.commit()
        assert await read() == "a" and computed == [10]  # still a hit: precise

        async with async_maker() as s:
            folder = await s.get(Folder, 10)
            assert folder is not None
            folder.name = "renamed"
            await s.commit()
        assert await read() == "renamed" and computed == [10, 10]  # fresh after commit

    asyncio.run(main())


def test_aget_or_set_with_tags_depends_on_those_only(env: Env, async_maker: Any) -> None:  # noqa: F811
    async def main() -> None:
        async with async_maker() as s:
            s.add(DataRoom(id=1, name="r"))
            s.add(Folder(id=10, data_room_id=1, name="a"))
            await s.commit()

        async def compute() -> str:
            async with async_maker() as s:
                folder = await s.get(Folder, 10)
                assert folder is not None
                return folder.name

        with capture_entries(env.app) as stored:
            assert await aget_or_set("k", compute, tags=["custom:1"]) == "a"
        assert not any(t.startswith("~r:") for t in stored.entries[0].tags)

    asyncio.run(main())
