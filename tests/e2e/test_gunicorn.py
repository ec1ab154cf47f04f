"""End to end: the example app under gunicorn (3 workers) on PostgreSQL + Redis, driven by
several client threads; no read issued after a write's response may show older data. The
reads include the async route (``GET .../tree``: an async view reading through a tracked
``AsyncSession``, issue 14), judged on every file and folder it shows.

How staleness is judged. Every object the test changes (a file's name+folder or its
absence once deleted, a folder's name, a membership) is *owned* by one client thread, so
its writes are sequential and numbered. Each write is logged with the time its request
was sent and the time its response arrived. A read sent at ``t0`` and answered at ``t1``
may show version ``m`` of an object only if ``m`` is at least the last version whose
response arrived before ``t0`` and, when it is newer, its request was sent before ``t1``.
Anything else is a stale read.

Needs ``REDIS_URL`` and ``DATABASE_URL`` (a shared cache and database between the workers);
skipped without them, failed with ``REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import pg_schema

from .gunicorn_server import gunicorn

pytestmark = pytest.mark.e2e

REDIS_URL = os.environ.get("REDIS_URL") or None
DATABASE_URL = os.environ.get("DATABASE_URL") or None
REQUIRED = os.environ.get("REQUIRE_SERVICES") == "1"
ROOT = Path(__file__).resolve().parents[2]

THREADS = 6
OPS_PER_THREAD = int(os.environ.get("E2E_OPS_PER_THREAD", "70"))
WRITE_SHARE = 0.35


def _require_services() -> None:
    if REDIS_URL and DATABASE_URL:
        return
    reason = "the e2e test needs REDIS_URL and DATABASE_URL (workers must share cache and DB)"
    if REQUIRED:
        pytest.fail(reason + ", and REQUIRE_SERVICES=1")
    pytest.skip(reason)


# -- HTTP client ------------------------------------------------------------------------------
class Client:
    """One keep-alive connection per thread (http.client: no extra dependency)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(
        self,
        method: str,
        path: str,
        user: str | None,
        body: Any = None,
        form: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {"X-User-Id": user} if user else {}
        data: bytes | None = None
        if form is not None:
            data = form
            headers["Content-Type"] = content_type or ""
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    raise
        parsed = (
            json.loads(raw)
            if raw and resp.getheader("Content-Type", "").startswith("application/json")
            else raw
        )
        return resp.status, parsed, {k.lower(): v for k, v in resp.getheaders()}

    def ok(self, method: str, path: str, user: str, body: Any = None, status: int = 200) -> Any:
        code, data, _ = self.request(method, path, user, body)
        assert code == status, (method, path, code, data)
        return data

    def upload(self, room: str, user: str, name: str, folder: str) -> Any:
        boundary = uuid.uuid4().hex
        buf = io.BytesIO()
        for key, value in (("folderId", folder.encode()),):
            buf.write(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode()
            )
            buf.write(value + b"\r\n")
        buf.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n".encode()
        )
        buf.write(name.encode() + b"\r\n" + f"--{boundary}--\r\n".encode())
        code, data, _ = self.request(
            "POST",
            f"/api/datarooms/{room}/files",
            user,
            form=buf.getvalue(),
            content_type=f"multipart/form-data; boundary={boundary}",
        )
        assert code == 201, (code, data)
        return data


# -- the history of every object ------------------------------------------------------------
@dataclass
class Version:
    n: int
    value: Any
    sent: float
    answered: float | None  # None while the write is in flight


@dataclass
class Tracked:
    versions: list[Version]
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, value: Any) -> Tracked:
        return cls([Version(0, value, 0.0, 0.0)])

    def begin(self, value: Any) -> Version:
        with self.lock:
            version = Version(self.versions[-1].n + 1, value, time.monotonic(), None)
            self.versions.append(version)
            return version

    def end(self, version: Version) -> None:
        with self.lock:
            version.answered = time.monotonic()

    def allowed(self, sent: float, answered: float) -> list[Any]:
        """Values a read sent at ``sent`` and answered at ``answered`` may show."""
        with self.lock:
            done = [v.n for v in self.versions if v.answered is not None and v.answered < sent]
            floor = max(done)
            return [
                v.value
                for v in self.versions
                if v.n == floor or (v.n > floor and v.sent < answered)
            ]


@dataclass
class Stats:
    requests: int = 0  # read requests sent
    reads: int = 0  # observations checked (a list read checks every tracked file)
    stale: int = 0
    writes: int = 0
    hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    examples: list[str] = field(default_factory=list)

    def read(self, fresh: bool, what: str, hit: bool) -> None:
        with self.lock:
            self.reads += 1
            self.hits += hit
            if not fresh:
                self.stale += 1
                if len(self.examples) < 10:
                    self.examples.append(what)


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    _require_services()
    assert DATABASE_URL is not None
    with pg_schema(DATABASE_URL, "e2e_") as url:
        yield url


@pytest.fixture(params=["redis", "redis+l1"])
def server(request: pytest.FixtureRequest, pg_schema_url: str, tmp_path: Path) -> Iterator[int]:
    """gunicorn, 3 workers, on a free loopback port; stopped and its Redis keys removed.

    Twice: on Redis alone, and with each worker's near cache (``CACHE_L1_MAX_ENTRIES``) in
    front of it, where freshness depends on the pub/sub invalidation reaching every worker.
    """
    import redis

    prefix = "e2e" + uuid.uuid4().hex[:10]
    env = dict(
        os.environ,
        DATABASE_URL=pg_schema_url,
        REDIS_URL=REDIS_URL or "",
        CACHE_KEY_PREFIX=prefix,
        CACHE_L1_MAX_ENTRIES="1000" if request.param == "redis+l1" else "0",
        STORAGE_DIR=str(tmp_path / "storage"),
        PYTHONUNBUFFERED="1",
    )
    # tables first, from one process (what `make serve` does)
    init = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "example_app", "init-db"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    args = ["--workers", "3", "--graceful-timeout", "5", "example_app:create_app()"]
    try:
        with gunicorn(args, env, tmp_path / "gunicorn.log") as (_proc, port):
            yield port
    finally:
        client = redis.Redis.from_url(REDIS_URL or "")
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])
        assert not list(client.scan_iter(match=f"{prefix}:*", count=1000))
        client.close()


# -- the workload ---------------------------------------------------------------------------
def test_no_stale_reads_under_gunicorn(server: int, request: pytest.FixtureRequest) -> None:
    mode = request.node.callspec.params.get("server", "redis")
    setup = Client(server)
    owner = setup.ok("POST", "/api/users", "", {"name": "Owner"}, 201)["id"]
    guest = setup.ok("POST", "/api/users", "", {"name": "Guest"}, 201)["id"]
    room = setup.ok("POST", "/api/datarooms", owner, {"name": "E2E"}, 201)["id"]
    shared = [
        setup.ok("POST", f"/api/datarooms/{room}/folders", owner, {"name": n}, 201)["id"]
        for n in ("A", "B", "C")
    ]

    files: dict[str, Tracked] = {}  # file id -> (name, folder), or None once deleted
    files_lock = threading.Lock()  # files gains entries while readers iterate it
    folders: dict[str, Tracked] = {}  # folder id -> name
    owned_files: list[list[str]] = []
    owned_folders: list[str] = []
    for t in range(THREADS):
        mine = []
        for j in range(2):
            name = f"t{t}f{j}-v00000"
            created = setup.upload(room, owner, name, shared[j % 3])
            files[created["id"]] = Tracked.start((name, shared[j % 3]))
            mine.append(created["id"])
        owned_files.append(mine)
        fname = f"d{t}-v00000"
        fid = setup.ok("POST", f"/api/datarooms/{room}/folders", owner, {"name": fname}, 201)["id"]
        folders[fid] = Tracked.start(fname)
        owned_folders.append(fid)
    membership = Tracked.start(False)  # is guest a member? owned by thread 0

    stats = Stats()
    errors: list[str] = []

    def observe(
        tracked: Tracked,
        sent: float,
        answered: float,
        pred: Callable[[Any], bool],
        what: str,
        hit: bool,
    ) -> None:
        stats.read(any(pred(v) for v in tracked.allowed(sent, answered)), what, hit)

    def all_files() -> list[tuple[str, Tracked]]:
        with files_lock:
            return list(files.items())

    def worker(t: int) -> None:
        rng = random.Random(t)
        client = Client(server)
        counter = 0
        try:
            for _ in range(OPS_PER_THREAD):
                if rng.random() < WRITE_SHARE:
                    counter += 1
                    kind = rng.choice(
                        ["move", "rename_file", "rename_folder", "upload", "delete"]
                        + (["member", "member"] if t == 0 else [])
                    )
                    if kind == "upload" or (kind == "delete" and len(owned_files[t]) < 2):
                        name = f"t{t}n{counter}-v{counter:05d}"
                        folder = rng.choice(shared)
                        sent = time.monotonic()
                        created = client.upload(room, owner, name, folder)
                        answered = time.monotonic()
                        tracked = Tracked(
                            [Version(0, None, 0.0, 0.0), Version(1, (name, folder), sent, answered)]
                        )
                        with files_lock:
                            files[created["id"]] = tracked
                        owned_files[t].append(created["id"])
                    elif kind == "delete":
                        fid = owned_files[t].pop(rng.randrange(len(owned_files[t])))
                        version = files[fid].begin(None)
                        client.ok("DELETE", f"/api/files/{fid}", owner, status=204)
                        files[fid].end(version)
                    elif kind in ("move", "rename_file"):
                        fid = rng.choice(owned_files[t])
                        name, folder = files[fid].versions[-1].value
                        base = name.rsplit("-v", 1)[0]
                        name = f"{base}-v{counter:05d}"
                        if kind == "move":
                            folder = rng.choice([f for f in shared if f != folder])
                        version = files[fid].begin((name, folder))
                        client.ok(
                            "PATCH", f"/api/files/{fid}", owner, {"name": name, "folderId": folder}
                        )
                        files[fid].end(version)
                    elif kind == "rename_folder":
                        fid = owned_folders[t]
                        version = folders[fid].begin(f"d{t}-v{counter:05d}")
                        client.ok("PATCH", f"/api/folders/{fid}", owner, {"name": version.value})
                        folders[fid].end(version)
                    else:
                        member = membership.versions[-1].value
                        version = membership.begin(not member)
                        if member:
                            client.ok(
                                "DELETE",
                                f"/api/datarooms/{room}/members/{guest}",
                                owner,
                                status=204,
                            )
                        else:
                            client.ok(
                                "POST",
                                f"/api/datarooms/{room}/members",
                                owner,
                                {"userId": guest, "role": "viewer"},
                                status=201,
                            )
                        membership.end(version)
                    with stats.lock:
                        stats.writes += 1
                    continue
                with stats.lock:
                    stats.requests += 1
                kind = rng.choice(
                    ["file", "list", "folders", "folder", "guest_room", "guest_rooms", "tree"]
                )
                sent = time.monotonic()
                if kind == "file":
                    fid, tracked = rng.choice(all_files())
                    code, data, headers = client.request("GET", f"/api/files/{fid}", owner)
                    answered = time.monotonic()
                    assert code in (200, 404), data
                    seen = (data["name"], data["folderId"]) if code == 200 else None
                    observe(
                        tracked,
                        sent,
                        answered,
                        lambda v, s=seen: v == s,
                        f"file {fid} showed {seen}",
                        headers.get("x-cache") == "HIT",
                    )
                elif kind == "list":
                    folder = rng.choice(shared)
                    code, data, headers = client.request(
                        "GET", f"/api/datarooms/{room}/files?folderId={folder}", owner
                    )
                    answered = time.monotonic()
                    assert code == 200, data
                    shown = {item["id"]: item["name"] for item in data["items"]}
                    for fid, tracked in all_files():
                        if fid in shown:
                            pred = lambda v, n=shown[fid], f=folder: v == (n, f)  # noqa: E731
                        else:
                            pred = lambda v, f=folder: v is None or v[1] != f  # noqa: E731
                        observe(
                            tracked,
                            sent,
                            answered,
                            pred,
                            f"list of {folder}: file {fid} -> {shown.get(fid)}",
                            headers.get("x-cache") == "HIT",
                        )
                elif kind == "folders":
                    code, data, headers = client.request(
                        "GET", f"/api/datarooms/{room}/folders", owner
                    )
                    answered = time.monotonic()
                    assert code == 200, data
                    names = {item["id"]: item["name"] for item in data["items"]}
                    for fid, tracked in folders.items():
                        observe(
                            tracked,
                            sent,
                            answered,
                            lambda v, n=names.get(fid, ""): v == n,  # noqa: B008
                            f"root list: folder {fid} -> {names.get(fid)}",
                            headers.get("x-cache") == "HIT",
                        )
                elif kind == "folder":
                    fid = rng.choice(owned_folders)
                    code, data, headers = client.request("GET", f"/api/folders/{fid}", owner)
                    answered = time.monotonic()
                    assert code == 200, data
                    observe(
                        folders[fid],
                        sent,
                        answered,
                        lambda v, n=data["name"]: v == n,
                        f"folder {fid} -> {data['name']}",
                        headers.get("x-cache") == "HIT",
                    )
                elif kind == "tree":  # the async view (AsyncSession), every file and folder
                    code, data, headers = client.request(
                        "GET", f"/api/datarooms/{room}/tree", owner
                    )
                    answered = time.monotonic()
                    assert code == 200, data
                    placed: dict[str, tuple[str, str | None]] = {}
                    named: dict[str, str] = {}
                    todo = [(data, None)]
                    while todo:
                        node, parent = todo.pop()
                        placed.update({f["id"]: (f["name"], parent) for f in node["files"]})
                        for sub in node["folders"]:
                            named[sub["id"]] = sub["name"]
                            todo.append((sub, sub["id"]))
                    hit = headers.get("x-cache") == "HIT"
                    for fid, tracked in all_files():
                        observe(
                            tracked,
                            sent,
                            answered,
                            lambda v, p=placed.get(fid): v == p,  # noqa: B008
                            f"tree: file {fid} -> {placed.get(fid)}",
                            hit,
                        )
                    for fid, tracked in folders.items():
                        observe(
                            tracked,
                            sent,
                            answered,
                            lambda v, n=named.get(fid, ""): v == n,  # noqa: B008
                            f"tree: folder {fid} -> {named.get(fid)}",
                            hit,
                        )
                elif kind == "guest_room":
                    code, data, headers = client.request("GET", f"/api/datarooms/{room}", guest)
                    answered = time.monotonic()
                    assert code in (200, 404), data
                    observe(
                        membership,
                        sent,
                        answered,
                        lambda v, c=code: v == (c == 200),
                        f"guest GET room -> {code}",
                        headers.get("x-cache") == "HIT",
                    )
                else:
                    code, data, headers = client.request("GET", "/api/datarooms", guest)
                    answered = time.monotonic()
                    assert code == 200, data
                    present = any(item["id"] == room for item in data["items"])
                    observe(
                        membership,
                        sent,
                        answered,
                        lambda v, p=present: v == p,
                        f"guest room list -> {present}",
                        headers.get("x-cache") == "HIT",
                    )
        except BaseException as exc:  # report it in the main thread
            errors.append(f"thread {t}: {exc!r}")

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.monotonic() - started
    print(
        f"\ne2e [{mode}]: {stats.writes} writes, {stats.requests} read requests, "
        f"{stats.reads} reads checked ({stats.hits} from cache), "
        f"{stats.stale} stale reads, {elapsed:.1f}s, {THREADS} client threads, 3 gunicorn workers"
    )
    assert not errors, errors
    assert stats.writes > 50 and stats.reads > 200
    assert stats.hits > 0, "nothing was served from the cache: the test proves nothing"
    assert stats.stale == 0, stats.examples
