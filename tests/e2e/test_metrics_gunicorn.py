"""End to end: ``/metrics`` of the example app under gunicorn with 3 workers reports the sum
over every worker (``PROMETHEUS_MULTIPROC_DIR``, ``example_app/gunicorn_conf.py``), exactly,
whichever worker answers the scrape, and still after a worker is killed and replaced.

Cached hits are served by several client threads with ``Connection: close`` (so they spread
over the workers; each worker's file in the directory shows it took part), counted from
their ``X-Cache`` headers, then ``/metrics`` is scraped several times (each scrape on a new
connection: any worker may answer). On the memory backend every worker has its own cache,
so each one's first request is a miss: the misses count the workers that served.

Runs on the memory backend with SQLite (no service needed), and on Redis when ``REDIS_URL``
is set.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .gunicorn_server import ROOT, gunicorn, worker_pids

pytest.importorskip("prometheus_client")

pytestmark = pytest.mark.e2e

REDIS_URL = os.environ.get("REDIS_URL") or None
THREADS = 6
PER_THREAD = 15


def _demo() -> tuple[str, str]:
    from example_app.openapi import ALICE, ROOM

    return ALICE, ROOM


def _get(port: int, path: str, user: str | None = None) -> tuple[int, str, bytes]:
    """One request on its own connection (``Connection: close``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Connection": "close"}
    if user:
        headers["X-User-Id"] = user
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("X-Cache") or "", resp.read()
    finally:
        conn.close()


@pytest.fixture(params=["memory", "redis"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "redis" and not REDIS_URL:
        pytest.skip("set REDIS_URL to run on Redis")
    prefix = "e2em" + uuid.uuid4().hex[:8]
    prom = tmp_path / "prom"
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{tmp_path / 'metrics.db'}",
        REDIS_URL=REDIS_URL if request.param == "redis" else "",
        CACHE_KEY_PREFIX=prefix,
        CACHE_L1_MAX_ENTRIES="0",
        STORAGE_DIR=str(tmp_path / "storage"),
        PROMETHEUS_MULTIPROC_DIR=str(prom),
        PYTHONUNBUFFERED="1",
    )
    env.pop("DATAROOM_REDIS_URL", None)
    prom.mkdir()
    (prom / "counter_1.db").write_bytes(b"")  # a previous run's: on_starting empties it
    for command in ("init-db", "seed"):
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "example_app", command],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
    args = [
        "-c", "example_app/gunicorn_conf.py", "--workers", "3", "--graceful-timeout", "5",
        "example_app:create_app()",
    ]
    try:
        with gunicorn(args, env, tmp_path / "gunicorn.log") as (proc, port):
            yield {"proc": proc, "port": port, "prom": prom, "backend": request.param}
    finally:
        if request.param == "redis":
            import redis

            client = redis.Redis.from_url(REDIS_URL or "")
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for i in range(0, len(keys), 1000):
                client.unlink(*keys[i : i + 1000])
            client.close()


def _serve(port: int, user: str, path: str) -> Counter[str]:
    """``THREADS x PER_THREAD`` GETs of a cached page; what ``X-Cache`` said."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[str] = []

    def client() -> None:
        for _ in range(PER_THREAD):
            status, xcache, body = _get(port, path, user)
            with lock:
                if status != 200:
                    errors.append(f"{status} {body[:200]!r}")
                seen[xcache] += 1

    threads = [threading.Thread(target=client) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return seen


def _scrape(port: int, name: str, endpoint: str) -> float:
    status, _, body = _get(port, "/metrics")
    assert status == 200
    pattern = re.compile(rf"^{name}\{{([^}}]*)\}} (\S+)$")
    total = 0.0
    for line in body.decode().splitlines():
        match = pattern.match(line)
        if match and f'endpoint="{endpoint}"' in match.group(1):
            total += float(match.group(2))
    return total


def _counter_files(prom: Path) -> set[str]:
    return {p.name for p in prom.glob("counter_*.db")}


def test_metrics_report_the_sum_over_every_worker(server: dict[str, Any]) -> None:
    port, prom = server["port"], server["prom"]
    user, room = _demo()
    path = f"/api/datarooms/{room}/folders"
    endpoint = "api.list_folders"
    assert "counter_1.db" not in _counter_files(prom)  # emptied when gunicorn started

    # Rounds until two workers or more have served (on a loaded machine one worker can
    # take every short request: the sum over workers needs several to mean anything).
    served: Counter[str] = Counter()
    for _ in range(20):
        served.update(_serve(port, user, path))
        if len(_counter_files(prom)) >= 2:
            break
    assert set(served) <= {"HIT", "MISS"} and served["HIT"] > 0
    workers = worker_pids(server["proc"].pid)
    assert len(workers) == 3
    counted_by = _counter_files(prom)
    assert len(counted_by) >= 2, f"the requests did not spread over the workers: {counted_by}"
    if server["backend"] == "memory":  # one miss per worker that served the page
        assert served["MISS"] == len(counted_by)
    for _ in range(8):  # each scrape may reach any worker: every one reports the sum
        assert _scrape(port, "dataroom_cache_hits_total", endpoint) == served["HIT"]
        assert _scrape(port, "dataroom_cache_misses_total", endpoint) == served["MISS"]

    # a worker killed (no clean exit) and replaced: its counts stay in the sum
    # a worker that has served (its counts must stay in the sum after it is gone)
    victim = min(pid for pid in workers if f"counter_{pid}.db" in counted_by)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        now = worker_pids(server["proc"].pid)
        if len(now) == 3 and victim not in now:
            break
        assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
        time.sleep(0.1)
    for _ in range(4):
        assert _scrape(port, "dataroom_cache_hits_total", endpoint) == served["HIT"]
    more = _serve(port, user, path)
    served.update(more)
    for _ in range(8):
        assert _scrape(port, "dataroom_cache_hits_total", endpoint) == served["HIT"]
        assert _scrape(port, "dataroom_cache_misses_total", endpoint) == served["MISS"]
    assert f"counter_{victim}.db" in _counter_files(prom)
