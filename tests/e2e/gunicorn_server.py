"""Starting and stopping gunicorn for the end-to-end tests: a free loopback port, wait until
the app answers, SIGTERM (then SIGKILL) at the end, and its worker processes."""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def gunicorn(
    args: list[str],
    env: dict[str, str],
    log_path: Path,
    *,
    ready_path: str = "/api/datarooms",
    ready_status: int = 401,
    timeout: float = 30,
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``python -m gunicorn --bind 127.0.0.1:<free port> *args`` from the repository root;
    yields ``(process, port)`` once ``GET ready_path`` answers ``ready_status``."""
    port = free_port()
    log = open(log_path, "w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, "gunicorn exited:\n" + log_path.read_text()
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", ready_path)
                if conn.getresponse().status == ready_status:
                    conn.close()
                    break
            assert time.monotonic() < deadline, "gunicorn did not start:\n" + log_path.read_text()
            time.sleep(0.1)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def worker_pids(master: int) -> set[int]:
    """The live worker processes of a gunicorn arbiter (Linux ``/proc``)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}
