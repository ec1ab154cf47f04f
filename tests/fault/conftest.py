"""Fault-injection fixtures: a redis-server of the test's own (killable, freezable,
restartable with its AOF), and a small Flask app with a cached view over a SQLite
"database" whose reads cost about a millisecond, like a query over the network."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify, request
from scale.servers import RedisProcess, free_port, start_server, wait_until

from flask_dataroom_cache import DataRoomCache, dataroom_tag, get_cache_key

#: Simulated database round trip (seconds).
DB_LATENCY = 0.001


@dataclass
class Server:
    """One redis-server we own; ``restart`` reuses its port and directory (and AOF)."""

    tmp: Path
    args: tuple[str, ...]
    port: int = field(default_factory=free_port)
    proc: RedisProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Server:
        self.proc = start_server(self.tmp, self.port, *self.args)
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.stop()  # SIGKILL: no shutdown save, only what the AOF already has

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.proc.pid, signal.SIGSTOP)  # accepts connections, never answers

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.proc.pid, signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> Any:
        assert self.proc is not None
        return self.proc.client()

    def stop(self) -> None:
        if self.proc is not None and self.proc.proc.poll() is None:
            self.resume()
            self.proc.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Server]:
    """A plain redis-server (no persistence)."""
    server = Server(tmp_path, ()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[Server]:
    """A redis-server that keeps its data across a kill -9 (AOF, fsync on every write)."""
    server = Server(tmp_path, ("--appendonly", "yes", "--appendfsync", "always")).start()
    try:
        yield server
    finally:
        server.stop()


class Database:
    """Rooms in a SQLite file; each read sleeps ``DB_LATENCY`` and is counted."""

    def __init__(self, path: Path, rooms: int = 20) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.reads = 0
        with sqlite3.connect(self.path) as conn:
            conn.execute("create table room (id integer primary key, name text)")
            conn.executemany(
                "insert into room values (?, ?)", [(i, f"room {i} v1") for i in range(rooms)]
            )

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(self.path, timeout=10)
        return conn

    def read(self, room_id: int) -> dict[str, Any]:
        with self._lock:
            self.reads += 1
        time.sleep(DB_LATENCY)
        row = self._conn().execute("select id, name from room where id = ?", (room_id,)).fetchone()
        return {"id": row[0], "name": row[1]}

    def write(self, room_id: int, name: str) -> None:
        conn = self._conn()
        conn.execute("update room set name = ? where id = ?", (name, room_id))
        conn.commit()

    def name(self, room_id: int) -> str:
        return str(self.read(room_id)["name"])


@dataclass
class Site:
    app: Flask
    cache: DataRoomCache
    db: Database

    @property
    def backend(self) -> Any:
        return self.cache.state(self.app).store.backend

    def stats(self) -> dict[str, Any]:
        return self.cache.state(self.app).stats()

    def wait_state(self, state: str, timeout: float = 10.0) -> None:
        """Wait for the breaker state, with a trickle of traffic: an idle process probes
        only when a request finds the cooldown over (or invalidations are queued)."""
        client = self.app.test_client()

        def reached() -> bool:
            if self.backend.state == state:
                return True
            client.get("/rooms/0")
            return bool(self.backend.state == state)

        wait_until(reached, timeout, f"breaker {state}")


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Callable[..., Site]]:
    made: list[Site] = []

    def factory(url: str, **config: Any) -> Site:
        app = Flask(f"fault_{uuid.uuid4().hex[:6]}")
        app.config.update(
            TESTING=True,
            REDIS_URL=url,
            CACHE_KEY_PREFIX="f" + uuid.uuid4().hex[:10],
            CACHE_REDIS_SOCKET_TIMEOUT=0.5,
            CACHE_BREAKER_THRESHOLD=3,
            CACHE_BREAKER_COOLDOWN=0.3,
        )
        app.config.update(config)
        cache = DataRoomCache(app)
        db = Database(tmp_path / f"{app.name}.db")
        store = cache.state(app).store

        @app.get("/rooms/<int:room_id>")
        def room(room_id: int) -> Any:
            value = store.get_or_set(
                get_cache_key("dataroom", room_id),
                lambda: db.read(room_id),
                tags=[dataroom_tag(room_id)],
                endpoint=request.endpoint,
            )
            return jsonify(value)

        @app.get("/uncached/rooms/<int:room_id>")
        def uncached_room(room_id: int) -> Any:
            return jsonify(db.read(room_id))

        @app.post("/rooms/<int:room_id>")
        def rename(room_id: int) -> Any:
            db.write(room_id, request.get_json()["name"])
            store.invalidate([dataroom_tag(room_id)])  # no session tracking here: now
            return jsonify(ok=True)

        site = Site(app, cache, db)
        made.append(site)
        return site

    yield factory
    for site in made:
        site.backend.close()
