"""Writers commit moves and renames while readers fill and read the cache.

Every write bumps the file's version (it is in its name), and the writer publishes the
version only after ``commit()`` returns. A reader notes the published versions *before*
it starts a read; everything it then sees through the cache must be at least that new.
Runs on each cache kind x database (real Redis and PostgreSQL when their URLs are set).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from flask_dataroom_cache import contents_tag, dataroom_tag, entity_tag, get_cache_key

from .conftest import Env
from .models import DataRoom, File, Folder

WRITERS = 2
READERS = 3
FILES_PER_WRITER = 3
COMMITS_PER_WRITER = 30
FOLDERS = (10, 20)


def _version(name: str) -> tuple[int, int]:
    file_part, version = name.split("-v")
    return int(file_part[1:]), int(version)


@pytest.mark.parametrize("snapshots", [False, True], ids=["per-statement", "snapshot"])
@pytest.mark.parametrize("apps", ["one app", "two apps"])
def test_reads_after_a_commit_never_see_older_data(
    make_env: Any, cache_kind: str, apps: str, snapshots: bool
) -> None:
    """With "two apps", writers commit through one app and readers read through another
    sharing the backend: two processes, as far as the cache can tell. With "snapshot",
    each reader's transaction keeps one snapshot for all its reads (PostgreSQL REPEATABLE
    READ, SQLite WAL with BEGIN), so its later fills are the dangerous kind."""
    if apps == "two apps" and cache_kind == "memory":
        pytest.skip("the memory backend is per process: nothing is shared")
    env: Env = make_env()
    app = env.app
    wenv: Env = make_env() if apps == "two apps" else env
    wapp = wenv.app
    if snapshots:
        from .test_snapshot import snapshot_engine

        with app.app_context():
            snapshot_engine(env.db.engine)
            env.db.engine.dispose()
    with app.app_context():
        s = env.session
        s.add(DataRoom(id=1, name="R"))
        s.add_all([Folder(id=f, data_room_id=1, name=f"d{f}") for f in FOLDERS])
        s.flush()
        for w in range(WRITERS):
            for i in range(FILES_PER_WRITER):
                fid = 100 + w * 10 + i
                s.add(File(id=fid, data_room_id=1, folder_id=FOLDERS[i % 2], name=f"f{fid}-v0"))
        s.commit()
    committed: dict[int, int] = {
        100 + w * 10 + i: 0 for w in range(WRITERS) for i in range(FILES_PER_WRITER)
    }
    lock = threading.Lock()
    done = threading.Event()
    errors: list[str] = []

    def fine_contents(folder: int) -> Any:
        key = get_cache_key("fine", folder)
        return env.store.get_or_set(
            key, lambda: env.contents_fresh(1, folder), tags=[contents_tag(folder)]
        )

    def file_view(fid: int) -> Any:
        key = get_cache_key("file", fid)

        def fresh() -> Any:
            return env.session.scalar(sa.select(File.name).where(File.id == fid))

        return env.store.get_or_set(key, fresh, tags=[entity_tag("file", fid), dataroom_tag(1)])

    def writer(w: int) -> None:
        rng = random.Random(w)
        try:
            for _ in range(COMMITS_PER_WRITER):
                fid = 100 + w * 10 + rng.randrange(FILES_PER_WRITER)
                move = rng.random() < 0.5
                for attempt in range(200):
                    try:
                        with wapp.app_context():
                            f = wenv.session.get(File, fid)
                            _, version = _version(f.name)
                            f.name = f"f{fid}-v{version + 1}"
                            if move:
                                f.folder_id = (
                                    FOLDERS[1] if f.folder_id == FOLDERS[0] else FOLDERS[0]
                                )
                            wenv.session.commit()
                        break
                    except sa.exc.OperationalError as exc:
                        # SQLite in WAL mode with deferred BEGIN: a writer whose snapshot
                        # is older than another writer's commit must start again
                        if "locked" not in str(exc) or attempt == 199:
                            raise
                        time.sleep(0.001 * rng.randint(1, 10))  # back off, then retry
                with lock:
                    committed[fid] = version + 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(f"writer {w}: {exc!r}")

    def reader(r: int) -> None:
        rng = random.Random(100 + r)
        try:
            while not done.is_set():
                with lock:
                    expected = dict(committed)
                with app.app_context():
                    seen: list[str] = []
                    kind = rng.randrange(3)
                    if kind == 0:
                        for folder in FOLDERS:
                            seen += env.contents(1, folder)["files"]
                    elif kind == 1:
                        for folder in FOLDERS:
                            seen += fine_contents(folder)["files"]
                    else:
                        seen += [file_view(fid) for fid in expected]
                for name in seen:
                    fid, version = _version(name)
                    if version < expected[fid]:
                        errors.append(f"reader {r} saw {name}, committed v{expected[fid]}")
        except Exception as exc:  # pragma: no cover
            errors.append(f"reader {r}: {exc!r}")

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    readers = [threading.Thread(target=reader, args=(r,)) for r in range(READERS)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(timeout=120)
    done.set()
    for t in readers:
        t.join(timeout=60)
    assert not errors, errors[:5]
    totals = env.store.metrics.snapshot()["total"]
    assert totals["hits"] + totals["misses"] + totals["bypasses"] > 0
    # and at rest, the cache agrees with the database
    with app.app_context():
        for folder in FOLDERS:
            assert env.contents(1, folder) == env.contents_fresh(1, folder)
            assert fine_contents(folder) == env.contents_fresh(1, folder)
