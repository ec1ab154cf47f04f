"""Random transactions over DataRoom / Folder / File against cached views.

A hypothesis ``RuleBasedStateMachine`` creates, renames, moves and deletes folders and
files (ORM and bulk statements, the database's ON DELETE CASCADE included), renames
rooms, changes memberships, opens savepoints that it releases or rolls back, rolls back
and commits, while reading cached views built with ``get_or_set`` and the library's tag
functions. After every commit, every view read through the cache must equal a fresh
database read.
"""

from __future__ import annotations

import itertools
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from flask_dataroom_cache import contents_tag, dataroom_tag, entity_tag, get_cache_key, user_tag

from .conftest import Env
from .models import Base, DataRoom, File, Folder, Membership

ROOMS = (1, 2)
counter = itertools.count(1)
USERS = ("u1", "u2", "u3")


def file_view(env: Env, room: int, file_id: int) -> Any:
    key = get_cache_key("file", file_id, room=room)
    tags = [entity_tag("file", file_id), dataroom_tag(room)]

    def fresh() -> Any:
        f = env.session.execute(
            sa.select(File.name, File.folder_id).where(
                File.id == file_id, File.data_room_id == room
            )
        ).first()
        return None if f is None else [f.name, f.folder_id]

    return env.store.get_or_set(key, fresh, tags=tags), fresh()


def fine_contents(env: Env, room: int, folder_id: int) -> Any:
    """Tagged with the folder's contents tag ONLY (no room tag): exact for folders that
    exist and for deleted ones, the database's cascades included (their removed children
    bump it; docs/tags.md, cascades)."""
    key = get_cache_key("fine-contents", folder_id, room=room)
    return env.store.get_or_set(
        key, lambda: env.contents_fresh(room, folder_id), tags=[contents_tag(folder_id)]
    )


def fine_file_view(env: Env, file_id: int) -> Any:
    key = get_cache_key("fine-file", file_id)

    def fresh() -> Any:
        f = env.session.execute(
            sa.select(File.name, File.folder_id).where(File.id == file_id)
        ).first()
        return None if f is None else [f.name, f.folder_id]

    return env.store.get_or_set(key, fresh, tags=[entity_tag("file", file_id)]), fresh()


def rooms_view(env: Env, user: str) -> Any:
    key = get_cache_key("rooms", user)

    def fresh() -> Any:
        rows = env.session.execute(
            sa.select(DataRoom.name)
            .join(Membership, Membership.data_room_id == DataRoom.id)
            .where(Membership.user_id == user)
            .order_by(DataRoom.name)
        )
        return [r.name for r in rows]

    return env.store.get_or_set(key, fresh, tags=[user_tag(user)]), fresh()


def make_machine(env: Env) -> type[RuleBasedStateMachine]:
    s = env.session

    class DataRoomMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            global counter
            counter = itertools.count(1)
            s.rollback()
            for table in reversed(Base.metadata.sorted_tables):
                s.execute(table.delete())
            s.commit()
            s.expunge_all()
            env.store.clear()
            for room in ROOMS:
                s.add(DataRoom(id=room, name=f"room{room}"))
            s.add(Membership(id=next(counter), data_room_id=1, user_id="u1"))
            s.add(Membership(id=next(counter), data_room_id=2, user_id="u2"))
            s.flush()
            for room in ROOMS:  # a small tree per room, so moves have somewhere to go
                top = [next(counter) for _ in range(2)]
                for n in top:
                    s.add(Folder(id=n, data_room_id=room, parent_id=None, name=f"dir{n}"))
                s.flush()
                sub = next(counter)
                s.add(Folder(id=sub, data_room_id=room, parent_id=top[0], name=f"dir{sub}"))
                s.flush()
                for parent in (None, *top, sub):
                    n = next(counter)
                    s.add(File(id=n, data_room_id=room, folder_id=parent, name=f"file{n}"))
            s.commit()
            self.seen_files: set[tuple[int, int]] = set()
            self.seen_folders: set[tuple[int, int]] = set()
            self.open_savepoints: list[Any] = []
            self.check()

        # -- helpers -------------------------------------------------------------------
        def folders(self, room: int) -> list[tuple[int, int | None]]:
            rows = s.execute(
                sa.select(Folder.id, Folder.parent_id)
                .where(Folder.data_room_id == room)
                .order_by(Folder.id)
            )
            return [(r.id, r.parent_id) for r in rows]

        def files(self, room: int) -> list[int]:
            return list(
                s.scalars(sa.select(File.id).where(File.data_room_id == room).order_by(File.id))
            )

        def check(self) -> None:
            for room in ROOMS:
                scopes: list[int | None] = [None, *[f for f, _ in self.folders(room)]]
                scopes += [f for r, f in self.seen_folders if r == room]
                for scope in scopes:
                    assert env.contents(room, scope) == env.contents_fresh(room, scope), (
                        room,
                        scope,
                    )
                    if scope is not None:
                        self.seen_folders.add((room, scope))
                fine_scopes = {f for f, _ in self.folders(room)}
                fine_scopes |= {f for r, f in self.seen_folders if r == room}
                for folder_id in sorted(fine_scopes):  # deleted folders too
                    assert fine_contents(env, room, folder_id) == env.contents_fresh(
                        room, folder_id
                    ), ("fine", room, folder_id)
                for file_id in self.files(room):
                    self.seen_files.add((room, file_id))
            for _room, file_id in sorted(self.seen_files):  # deleted files too
                cached, fresh = fine_file_view(env, file_id)
                assert cached == fresh, ("fine file", file_id)
            for room, file_id in sorted(self.seen_files):
                cached, fresh = file_view(env, room, file_id)
                assert cached == fresh, (room, file_id)
            for user in USERS:
                cached, fresh = rooms_view(env, user)
                assert cached == fresh, user
            s.rollback()  # end the read transaction

        # -- writes --------------------------------------------------------------------
        @rule(data=st.data(), room=st.sampled_from(ROOMS), is_file=st.booleans())
        def create(self, data: Any, room: int, is_file: bool) -> None:
            parent = data.draw(st.sampled_from([None, *[f for f, _ in self.folders(room)]]))
            n = next(counter)
            if is_file:
                s.add(File(id=n, data_room_id=room, folder_id=parent, name=f"file{n}"))
            else:
                s.add(Folder(id=n, data_room_id=room, parent_id=parent, name=f"dir{n}"))

        @rule(data=st.data(), room=st.sampled_from(ROOMS), is_file=st.booleans())
        def rename(self, data: Any, room: int, is_file: bool) -> None:
            ids = self.files(room) if is_file else [f for f, _ in self.folders(room)]
            if ids:
                obj = s.get(File if is_file else Folder, data.draw(st.sampled_from(ids)))
                obj.name = f"renamed{next(counter)}"

        @rule(data=st.data(), room=st.sampled_from(ROOMS), by_relationship=st.booleans())
        def move_file(self, data: Any, room: int, by_relationship: bool) -> None:
            ids = self.files(room)
            if not ids:
                return
            f = s.get(File, data.draw(st.sampled_from(ids)))
            target = data.draw(st.sampled_from([None, *[x for x, _ in self.folders(room)]]))
            if data.draw(st.booleans()):
                s.expire(f)  # as after a commit: the old parent is not loaded
            if by_relationship:
                f.folder = s.get(Folder, target) if target is not None else None
            else:
                f.folder_id = target

        @rule(data=st.data(), room=st.sampled_from(ROOMS))
        def move_folder(self, data: Any, room: int) -> None:
            tree = self.folders(room)
            if not tree:
                return
            moving = data.draw(st.sampled_from([f for f, _ in tree]))
            children: dict[int | None, list[int]] = {}
            for f, p in tree:
                children.setdefault(p, []).append(f)
            banned, todo = set(), [moving]
            while todo:
                x = todo.pop()
                banned.add(x)
                todo.extend(children.get(x, []))
            targets = [None, *[f for f, _ in tree if f not in banned]]
            folder = s.get(Folder, moving)
            if data.draw(st.booleans()):
                s.expire(folder)  # as after a commit: the old parent is not loaded
            folder.parent_id = data.draw(st.sampled_from(targets))

        @rule(data=st.data(), room=st.sampled_from(ROOMS), how=st.sampled_from(["orm", "bulk"]))
        def delete(self, data: Any, room: int, how: str) -> None:
            kind = data.draw(st.sampled_from([File, Folder]))
            ids = self.files(room) if kind is File else [f for f, _ in self.folders(room)]
            if not ids:
                return
            target = data.draw(st.sampled_from(ids))
            if how == "orm":
                s.delete(s.get(kind, target))
                s.flush()
            else:
                s.execute(sa.delete(kind).where(kind.id == target))
            s.expire_all()  # the database may have cascaded

        @rule(data=st.data(), room=st.sampled_from(ROOMS), how=st.sampled_from(["rename", "move"]))
        def bulk_update(self, data: Any, room: int, how: str) -> None:
            folders = [None, *[f for f, _ in self.folders(room)]]
            source = data.draw(st.sampled_from(folders))
            where = File.folder_id.is_(None) if source is None else File.folder_id == source
            where = sa.and_(where, File.data_room_id == room)
            if how == "rename":
                s.execute(sa.update(File).where(where).values(name=f"bulk{next(counter)}"))
            else:
                target = data.draw(st.sampled_from(folders))
                s.execute(sa.update(File).where(where).values(folder_id=target))

        @rule(room=st.sampled_from(ROOMS))
        def rename_room(self, room: int) -> None:
            s.get(DataRoom, room).name = f"room{room}-{next(counter)}"

        @rule(room=st.sampled_from(ROOMS), user=st.sampled_from(USERS), add=st.booleans())
        def membership(self, room: int, user: str, add: bool) -> None:
            found = s.scalars(
                sa.select(Membership).where(
                    Membership.data_room_id == room, Membership.user_id == user
                )
            ).first()
            if add and found is None:
                s.add(Membership(id=next(counter), data_room_id=room, user_id=user))
            elif not add and found is not None:
                s.delete(found)

        # -- transactions -------------------------------------------------------------
        @precondition(lambda self: len(self.open_savepoints) < 3)
        @rule()
        def savepoint(self) -> None:
            self.open_savepoints.append(s.begin_nested())

        @precondition(lambda self: bool(self.open_savepoints))
        @rule(release=st.booleans())
        def end_savepoint(self, release: bool) -> None:
            sp = self.open_savepoints.pop()
            if release:
                sp.commit()
            else:
                sp.rollback()
                s.expire_all()

        @rule()
        def rollback(self) -> None:
            self.open_savepoints.clear()
            s.rollback()

        @rule(data=st.data(), room=st.sampled_from(ROOMS))
        def read(self, data: Any, room: int) -> None:
            scope = data.draw(st.sampled_from([None, *[f for f, _ in self.folders(room)]]))
            env.contents(room, scope)

        @rule()
        def commit(self) -> None:
            self.open_savepoints.clear()
            s.commit()
            self.check()

        def teardown(self) -> None:
            s.rollback()

    return DataRoomMachine


def test_cached_views_equal_the_database_after_every_commit(env: Env) -> None:
    machine = make_machine(env)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=int(__import__("os").environ.get("SM_EXAMPLES", "12")),
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            # no shrinking/explaining: a failure is reported at once with its steps
            # (shrinking a database-backed machine can outlast the test timeout)
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
        ),
    )
