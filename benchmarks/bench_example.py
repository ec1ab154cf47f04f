"""HTTP figures of the example app under gunicorn on loopback: listing a folder of 200 files.

One run, same machine, same data, same Redis:

* ``uncached``: the app with ``CACHE_ENABLED=0`` (every request queries the database);
* ``cached (Redis)``: ``@cache.cached`` on Redis, L1 off;
* ``cached (Redis + L1)``: the same with ``CACHE_L1_MAX_ENTRIES`` set;
* ``Flask-Caching``: the same view function cached with Flask-Caching on the same Redis;
* ``floor``: a view returning the same body pre-built (Flask + gunicorn alone).

Each figure is requests per second (median, min, max over timed windows, the five
configurations measured in interleaved rounds) from
``CLIENTS`` client processes, each sending one request at a time on a fresh connection
(gunicorn's sync workers close the connection after each response), as the caller user.
The client shares the machine's cores with the server, so absolute numbers are a lower
bound; the ratios (same run) are what to compare.

Two knobs re-run the same figures under another setup (to check that a ratio is not an
artefact of the client or the worker model):

* ``BENCH_HTTP_CLIENT=wrk``: load from ``wrk`` (C, keep-alive where the server allows it)
  with ``CLIENTS + 1`` connections instead of the Python clients; ``wrk`` must be on PATH.
* ``BENCH_GUNICORN_ARGS``: the worker options (default ``--workers 3``), e.g.
  ``--workers 2 --worker-class gthread --threads 4`` (keeps connections alive).

The database is ``DATABASE_URL`` (a throwaway schema) or a SQLite file; Redis is
``BenchEnv.redis_url`` under a throwaway prefix that is removed afterwards.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing as mp
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import BenchEnv, pg_schema, ratio_row

GROUP = "example"
ROOT = Path(__file__).resolve().parents[1]
FILES = 200
WORKERS = 3
CLIENTS = 3


def _gunicorn_args() -> list[str]:
    return shlex.split(os.environ.get("BENCH_GUNICORN_ARGS") or f"--workers {WORKERS}")


def _http_client() -> str:
    client = os.environ.get("BENCH_HTTP_CLIENT") or "python"
    if client not in ("python", "wrk"):
        raise RuntimeError(f"BENCH_HTTP_CLIENT must be 'python' or 'wrk', not {client!r}")
    if client == "wrk" and shutil.which("wrk") is None:
        raise RuntimeError("BENCH_HTTP_CLIENT=wrk but wrk is not on PATH (apt install wrk)")
    return client


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _gunicorn(env: dict[str, str], log: Path) -> Iterator[int]:
    port = _free_port()
    out = open(log, "a")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", *_gunicorn_args(),
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
            "benchmarks.example_wsgi:create()",
        ],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {log}:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/api/datarooms")
                status = conn.getresponse().status
                conn.close()
                if status == 401:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def _call(port: int, method: str, path: str, user: str | None, body: Any = None,
          raw: bytes | None = None, content_type: str | None = None) -> Any:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"X-User-Id": user} if user else {}
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    elif content_type:
        headers["Content-Type"] = content_type
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path} -> {resp.status} {payload[:200]!r}")
    return json.loads(payload) if payload else None


def _seed(port: int) -> tuple[str, str, str]:
    user = _call(port, "POST", "/api/users", None, {"name": "Bench"})["id"]
    room = _call(port, "POST", "/api/datarooms", user, {"name": "Bench room"})["id"]
    folder = _call(port, "POST", f"/api/datarooms/{room}/folders", user, {"name": "Big"})["id"]
    for i in range(FILES):
        boundary = uuid.uuid4().hex
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="folderId"\r\n\r\n{folder}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="quarterly-report-{i:03d}.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
            f"%PDF-{i}\r\n--{boundary}--\r\n"
        ).encode()
        _call(port, "POST", f"/api/datarooms/{room}/files", user, raw=body,
              content_type=f"multipart/form-data; boundary={boundary}")  # fmt: skip
    return user, room, folder


def _client(port: int, request: bytes, seconds: float, start: float, out: Any) -> None:
    """Send requests back to back until ``start + seconds``; count the 200s."""
    while time.time() < start:
        time.sleep(0.001)
    done = bad = 0
    end = start + seconds
    while time.time() < end:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        sock.close()
        if b"".join(chunks[:1]).startswith(b"HTTP/1.1 200"):
            done += 1
        else:
            bad += 1
    out.put((done, bad))


def _window_wrk(port: int, path: str, user: str, seconds: float) -> float:
    """Requests per second of one timed window of ``wrk`` (``CLIENTS + 1`` connections)."""
    conns = CLIENTS + 1
    out = subprocess.run(
        ["wrk", "-t2", f"-c{conns}", f"-d{max(1, round(seconds))}s",
         "-H", f"X-User-Id: {user}", f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors on {path}:\n{out}")
    found = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if found is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return float(found.group(1))


def _window(port: int, path: str, user: str, seconds: float) -> float:
    """Requests per second of one timed window (``CLIENTS`` processes in parallel)."""
    if _http_client() == "wrk":
        return _window_wrk(port, path, user, seconds)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-User-Id: {user}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    start = time.time() + 0.2
    procs = [
        ctx.Process(target=_client, args=(port, request, seconds, start, queue))
        for _ in range(CLIENTS)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=seconds + 60) for _ in procs]
    for proc in procs:
        proc.join()
    bad = sum(r[1] for r in results)
    if bad:
        raise RuntimeError(f"{bad} non-200 answers from {path}")
    return sum(r[0] for r in results) / seconds


def _interleaved(
    targets: dict[str, tuple[int, str]], user: str, seconds: float, repeats: int
) -> dict[str, dict[str, Any]]:
    """One warm-up window per target, then ``repeats`` rounds of one window per target.

    Interleaving the rounds means a change in machine load (other processes) hits every
    figure alike instead of biasing whichever ran during it.
    """
    samples: dict[str, list[float]] = {name: [] for name in targets}
    for _name, (port, path) in targets.items():
        _window(port, path, user, min(seconds, 1.0))
    for _ in range(repeats):
        for name, (port, path) in targets.items():
            samples[name].append(_window(port, path, user, seconds))
    return {
        name: {
            "rps": round(statistics.median(vals), 1),
            "min_rps": round(min(vals), 1),
            "max_rps": round(max(vals), 1),
        }
        for name, vals in samples.items()
    }


@contextlib.contextmanager
def _database(env: BenchEnv, tmp: Path) -> Iterator[str]:
    if not env.database_url:
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    with pg_schema(env.database_url) as url:
        yield url


def run(env: BenchEnv) -> list[dict[str, Any]]:
    import redis

    _http_client()  # a bad BENCH_HTTP_CLIENT fails before any server starts
    seconds = 1.0 if env.quick else 3.0
    repeats = 3 if env.quick else 5
    prefix = "benchex" + uuid.uuid4().hex[:8]
    rclient = redis.Redis.from_url(env.redis_url)
    rclient.ping()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        log = tmp / "gunicorn.log"
        try:
            with _database(env, tmp) as db_url:
                base_env = dict(
                    os.environ,
                    DATABASE_URL=db_url,
                    REDIS_URL=env.redis_url,
                    CACHE_KEY_PREFIX=prefix,
                    STORAGE_DIR=str(tmp / "storage"),
                )
                base_env.pop("CACHE_L1_MAX_ENTRIES", None)
                init = subprocess.run(
                    [sys.executable, "-m", "flask", "--app", "example_app", "init-db"],
                    cwd=ROOT, env=base_env, capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                if init.returncode:
                    raise RuntimeError(init.stderr)
                # three servers at once (same database and Redis): the app as is, with the
                # cache disabled, and with L1 on; measured in interleaved rounds
                with (
                    _gunicorn(base_env, log) as port,
                    _gunicorn(dict(base_env, CACHE_ENABLED="0"), log) as port_off,
                    _gunicorn(dict(base_env, CACHE_L1_MAX_ENTRIES="1000"), log) as port_l1,
                ):
                    user, room, folder = _seed(port)
                    listing = f"/datarooms/{room}/files?folderId={folder}"
                    for p in (port, port_off, port_l1):
                        assert len(_call(p, "GET", "/api" + listing, user)["items"]) == FILES
                    figures = _interleaved(
                        {
                            "uncached": (port_off, "/api" + listing),
                            "cached (Redis)": (port, "/api" + listing),
                            "cached (Redis + L1)": (port_l1, "/api" + listing),
                            "Flask-Caching (Redis)": (port, "/bench/fc" + listing),
                            "floor (pre-built body)": (port, "/bench/floor" + listing),
                        },
                        user,
                        seconds,
                        repeats,
                    )
        finally:
            for pattern in (f"{prefix}:*", f"{prefix}-fc:*"):
                keys = list(rclient.scan_iter(match=pattern, count=1000))
                for i in range(0, len(keys), 1000):
                    rclient.unlink(*keys[i : i + 1000])
            rclient.close()

    client = "wrk" if _http_client() == "wrk" else f"{CLIENTS} Python clients"
    note = f"GET a folder of {FILES} files, gunicorn {' '.join(_gunicorn_args())}, {client}"
    for name in ("uncached", "cached (Redis)", "cached (Redis + L1)", "Flask-Caching (Redis)",
                 "floor (pre-built body)"):  # fmt: skip
        rows.append({"group": GROUP, "name": f"http {name}", **figures[name], "note": note})

    def ratio(a: str, b: str) -> float:
        return float(figures[a]["rps"]) / float(figures[b]["rps"])

    rows.append(ratio_row(GROUP, "http cached (Redis) / uncached",
                          ratio("cached (Redis)", "uncached"), ">= 3 (informative)",
                          ratio("cached (Redis)", "uncached") >= 3))  # fmt: skip
    rows.append(ratio_row(GROUP, "http cached (Redis) / Flask-Caching",
                          ratio("cached (Redis)", "Flask-Caching (Redis)"), "informative",
                          True))  # fmt: skip
    # The target is the ratio to the constant-body floor view served by the same gunicorn
    # (issue 13); against Flask-Caching the floor bounds what can be reached: information.
    l1_fc = ratio("cached (Redis + L1)", "Flask-Caching (Redis)")
    floor_fc = ratio("floor (pre-built body)", "Flask-Caching (Redis)")
    rows.append(ratio_row(GROUP, "http L1 / Flask-Caching", l1_fc,
                          f"info (floor / Flask-Caching: {floor_fc:.2f}x)", True))  # fmt: skip
    l1_floor = ratio("cached (Redis + L1)", "floor (pre-built body)")
    rows.append(ratio_row(GROUP, "http L1 / constant-body floor", l1_floor, ">= 0.95",
                          l1_floor >= 0.95))  # fmt: skip
    return rows
