"""Redis outages against a real redis-server: killed, frozen, restarted with its AOF.

Promise 4 (cache trouble never breaks a request) and promise 1 (fresh after commit) while
Redis fails: 0 failed requests, no request pays the socket timeout once the breaker is
open, the cached path stays as fast as the uncached one while Redis is down, and no entry
cached before a write made during the outage is served after Redis comes back.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask

from flask_dataroom_cache import dataroom_tag, get_cache_key

from .conftest import Server, Site

pytestmark = [pytest.mark.redis_server, pytest.mark.timeout(120)]

ROOMS = 10


@dataclass
class Sample:
    path: str
    start: float
    latency: float
    status: int
    name: str | None


@dataclass
class Load:
    """Threads issuing GETs through the Flask app until stopped; every response recorded."""

    app: Flask
    paths: Callable[[int], list[str]]
    threads: int = 4
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self, n: int) -> None:
        client = self.app.test_client()
        out: list[Sample] = []
        i = n
        while not self._stop.is_set():
            i += 1
            for path in self.paths(i):
                t0 = time.monotonic()
                try:
                    resp = client.get(path)
                    status, name = resp.status_code, (resp.get_json() or {}).get("name")
                except Exception:  # a failed request is what the test must catch
                    status, name = -1, None
                out.append(Sample(path, t0, time.monotonic() - t0, status, name))
        self.samples.extend(out)

    def start(self) -> Load:
        for n in range(self.threads):
            t = threading.Thread(target=self._run, args=(n,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        for t in self._workers:
            t.join(30)
        return self.samples

    def run(self, seconds: float) -> list[Sample]:
        self.start()
        time.sleep(seconds)
        return self.stop()


def rooms(i: int) -> list[str]:
    return [f"/rooms/{i % ROOMS}"]


def both_paths(i: int) -> list[str]:
    """Cached and uncached path interleaved, so both see the same machine noise."""
    return [f"/rooms/{i % ROOMS}", f"/uncached/rooms/{i % ROOMS}"]


def assert_all_ok(samples: list[Sample], expected: Callable[[str], str]) -> None:
    failed = [s for s in samples if s.status != 200]
    assert not failed, f"{len(failed)} failed requests, e.g. {failed[:3]}"
    wrong = [s for s in samples if s.name != expected(s.path)]
    assert not wrong, f"{len(wrong)} wrong answers, e.g. {wrong[:3]}"


def v1(path: str) -> str:
    return f"room {path.rsplit('/', 1)[1]} v1"


def test_kill_mid_load(
    redis_server: Server, make_site: Callable[..., Site], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_dataroom_cache")
    timeout = 1.0  # generous: the bound below must hold on a loaded CI machine
    site = make_site(redis_server.url, CACHE_REDIS_SOCKET_TIMEOUT=timeout)
    load = Load(site.app, rooms).start()
    time.sleep(0.5)
    redis_server.kill()
    site.wait_state("open", 10)
    opened_at = time.monotonic()
    time.sleep(1.0)
    samples = load.stop()
    assert_all_ok(samples, v1)
    after_open = [s for s in samples if s.start > opened_at]
    assert len(after_open) > 100
    # The killed server refuses connections, but nothing may wait on Redis anyway.
    assert max(s.latency for s in after_open) < timeout, max(s.latency for s in after_open)

    # While it is down, the cached path costs what the uncached one does (functional bound).
    down = Load(site.app, both_paths).run(1.5)
    assert_all_ok(down, v1)
    cached = [s.latency for s in down if s.path.startswith("/rooms/")]
    uncached = [s.latency for s in down if s.path.startswith("/uncached/")]
    assert len(cached) > 200 and len(uncached) > 200
    assert statistics.median(cached) <= 2 * statistics.median(uncached), (
        statistics.median(cached),
        statistics.median(uncached),
    )
    assert site.backend.state == "open"

    redis_server.start()
    site.wait_state("closed", 10)
    client = site.app.test_client()
    client.get("/rooms/3")
    reads = site.db.reads
    assert client.get("/rooms/3").get_json()["name"] == "room 3 v1"
    assert site.db.reads == reads  # cached again

    lines = [
        r.getMessage() for r in caplog.records
        if r.name == "flask_dataroom_cache" and r.levelno >= logging.INFO
    ]  # fmt: skip
    assert len(lines) == 2, lines
    assert "is down" in lines[0] and "consecutive error" in lines[0]
    assert "is back" in lines[1] and "skipped operations" in lines[1]
    stats = site.stats()
    assert stats["backend"]["breaker"] == "closed"
    assert stats["backend"]["times_opened"] == 1
    assert stats["backend"]["errors"] >= 3
    assert stats["total"]["errors"] == stats["backend"]["errors"]
    assert stats["endpoints"]["room"]["errors"] >= 1


def test_frozen_server_costs_a_timeout_only_until_the_breaker_opens(
    redis_server: Server, make_site: Callable[..., Site]
) -> None:
    timeout = 1.0  # long enough that only a real Redis wait can reach it, even under load
    site = make_site(redis_server.url, CACHE_REDIS_SOCKET_TIMEOUT=timeout)
    load = Load(site.app, rooms).start()
    time.sleep(0.3)
    redis_server.pause()  # SIGSTOP: connections are accepted, nothing is answered
    try:
        site.wait_state("open", 10)
        opened_at = time.monotonic()
        time.sleep(1.5)  # several cooldowns: the probes time out in the background
        samples = load.stop()
    finally:
        redis_server.resume()
    assert_all_ok(samples, v1)
    slow = [s for s in samples if s.latency >= timeout * 0.9]
    assert slow, "the freeze should have cost some requests a timeout before the breaker opened"
    assert all(s.start < opened_at for s in slow)
    after_open = [s for s in samples if s.start > opened_at]
    assert len(after_open) > 100
    worst = max(s.latency for s in after_open)
    assert worst < timeout, f"a request paid {worst:.3f}s after the breaker opened"
    site.wait_state("closed", 10)


def _entry_and_token(site: Site, server: Server, room: int) -> tuple[str, str]:
    with site.app.app_context():
        key = get_cache_key("dataroom", room)
    prefix = site.cache.state(site.app).settings.key_prefix
    return key, f"{prefix}:~tagv:{dataroom_tag(room)}"


def _aof_bytes(server: Server) -> bytes:
    assert server.proc is not None
    return b"".join(p.read_bytes() for p in Path(server.proc.directory).rglob("*.aof*"))


def test_no_stale_entry_after_restart_with_aof(
    aof_server: Server, make_site: Callable[..., Site]
) -> None:
    site = make_site(aof_server.url)
    client = site.app.test_client()
    assert client.get("/rooms/1").get_json()["name"] == "room 1 v1"
    reads = site.db.reads
    assert client.get("/rooms/1").get_json()["name"] == "room 1 v1"
    assert site.db.reads == reads  # cached in Redis
    key, token_key = _entry_and_token(site, aof_server, 1)
    old_token = aof_server.client().get(token_key)
    assert old_token and aof_server.client().exists(key)

    aof_server.kill()
    assert key.encode() in _aof_bytes(aof_server)  # the restart will bring the entry back
    resp = client.post("/rooms/1", json={"name": "room 1 v2"})
    assert resp.status_code == 200
    assert site.backend.state == "open" and site.backend.pending == 1

    load = Load(site.app, lambda i: ["/rooms/1"], threads=3).start()
    time.sleep(0.3)
    aof_server.start()
    site.wait_state("closed", 10)
    time.sleep(0.3)
    samples = load.stop()
    assert_all_ok(samples, lambda p: "room 1 v2")
    assert aof_server.client().get(token_key) != old_token  # the queued bump was delivered
    reads = site.db.reads
    assert client.get("/rooms/1").get_json()["name"] == "room 1 v2"
    assert site.db.reads == reads  # and the fresh value is cached again


def test_queue_overflow_bumps_the_epoch(aof_server: Server, make_site: Callable[..., Site]) -> None:
    site = make_site(aof_server.url, CACHE_PENDING_MAX=2)
    client = site.app.test_client()
    for r in range(6):
        client.get(f"/rooms/{r}")
    reads = site.db.reads
    for r in range(6):
        client.get(f"/rooms/{r}")
    assert site.db.reads == reads
    aof_server.kill()
    for r in range(3):
        client.post(f"/rooms/{r}", json={"name": f"room {r} v2"})
    assert site.backend.pending == 1  # the three tags became one epoch bump
    aof_server.start()
    site.wait_state("closed", 10)
    reads = site.db.reads
    for r in range(6):
        want = f"room {r} v2" if r < 3 else f"room {r} v1"
        assert client.get(f"/rooms/{r}").get_json()["name"] == want
    assert site.db.reads == reads + 6  # everything missed, untouched rooms too
    assert site.stats()["backend"]["epoch_bumps"] == 1


def test_memory_fallback_serves_repeats_and_is_cleared_on_recovery(
    redis_server: Server, make_site: Callable[..., Site]
) -> None:
    site = make_site(redis_server.url, CACHE_FALLBACK="memory", CACHE_FALLBACK_TTL=1)
    client = site.app.test_client()
    client.get("/rooms/1")
    redis_server.kill()
    for _ in range(5):
        assert client.get("/rooms/1").get_json()["name"] == "room 1 v1"
    site.wait_state("open", 10)
    reads = site.db.reads
    for _ in range(20):
        assert client.get("/rooms/1").get_json()["name"] == "room 1 v1"
    assert site.db.reads <= reads + 1  # the first fills the fallback, the rest are served
    stats = site.stats()
    assert stats["backend"]["fallback_serves"] >= 19
    assert stats["endpoints"]["room"]["fallback_serves"] >= 19
    time.sleep(1.1)  # CACHE_FALLBACK_TTL: short-lived
    reads = site.db.reads
    client.get("/rooms/1")
    assert site.db.reads == reads + 1
    client.post("/rooms/1", json={"name": "room 1 v2"})  # this process's writes apply at once
    assert client.get("/rooms/1").get_json()["name"] == "room 1 v2"
    assert site.backend.fallback.info()["keys"] >= 1
    redis_server.start()
    site.wait_state("closed", 10)
    assert site.backend.fallback.info()["keys"] == 0
    assert client.get("/rooms/1").get_json()["name"] == "room 1 v2"


def test_unreachable_at_start_then_up(
    tmp_path: Path, make_site: Callable[..., Site], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_dataroom_cache")
    server = Server(tmp_path, ())  # a free port, nothing listening yet
    try:
        site = make_site(server.url)
        assert site.backend.state == "open"
        client = site.app.test_client()
        for _ in range(3):
            assert client.get("/rooms/2").get_json()["name"] == "room 2 v1"
        server.start()
        site.wait_state("closed", 10)
        assert site.backend.fallback.info()["keys"] == 0  # the start-up local cache is dropped
        client.get("/rooms/2")
        reads = site.db.reads
        assert client.get("/rooms/2").get_json()["name"] == "room 2 v1"
        assert site.db.reads == reads  # Redis serves now
    finally:
        server.stop()
    lines = [
        (r.levelname, r.getMessage()) for r in caplog.records
        if r.name == "flask_dataroom_cache" and r.levelno >= logging.INFO
    ]  # fmt: skip
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert "unreachable" in lines[0][1] and "is back" in lines[1][1]
