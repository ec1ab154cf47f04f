"""Start throwaway ``redis-server`` processes on free loopback ports, and always stop them.

Used by the Cluster, Sentinel and near-cache tests. Every process runs in its own temporary
directory, binds 127.0.0.1 only, persists nothing, and is killed by the fixture that
started it (``RedisProcess.stop``), even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server")
REQUIRED = os.environ.get("CI") in ("true", "1") or os.environ.get("REQUIRE_SERVICES") == "1"


def require_redis_server() -> str:
    """The binary's path; fails in CI / REQUIRE_SERVICES=1, else skips, when it is missing."""
    if REDIS_SERVER is None:
        if REQUIRED:
            pytest.fail("redis-server is not installed, and CI / REQUIRE_SERVICES=1 needs it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return REDIS_SERVER


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, with_bus: bool = False) -> int:
    """A free loopback port (and ``port + 10000`` free too, for a cluster bus)."""
    for _ in range(200):
        port = random.randint(20000, 29999 if with_bus else 55000)
        if _port_free(port) and (not with_bus or _port_free(port + 10000)):
            return port
    raise RuntimeError("no free port found")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


@dataclass
class RedisProcess:
    """One ``redis-server`` (or sentinel) process we own."""

    port: int
    directory: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, **kw: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **kw)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)


def start_server(
    tmp: Path, port: int, *args: str, sentinel_conf: str | None = None
) -> RedisProcess:
    """Start ``redis-server`` on ``127.0.0.1:port`` in ``tmp/port`` and wait for PING."""
    binary = require_redis_server()
    directory = tmp / str(port)
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "server.log"
    if sentinel_conf is not None:
        conf = directory / "sentinel.conf"
        conf.write_text(sentinel_conf)
        cmd = [binary, str(conf), "--sentinel"]
    else:
        cmd = [binary]
    cmd += [
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--save", "", "--appendonly", "no", "--logfile", str(log),
        "--protected-mode", "no", *args,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = RedisProcess(port, directory, proc, log)
    try:
        wait_until(lambda: bool(server.client().ping()), 10, f"redis-server on {port}")
    except TimeoutError:
        server.stop()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"redis-server on {port} did not start: {err}") from None
    return server


@dataclass
class Cluster:
    nodes: list[RedisProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def running_cluster(tmp: Path, masters: int = 3) -> Iterator[Cluster]:
    """A ``masters``-node Redis Cluster with all 16384 slots assigned (no replicas)."""
    cluster = Cluster()
    try:
        for _ in range(masters):
            port = free_port(with_bus=True)
            cluster.nodes.append(
                start_server(
                    tmp, port, "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                )
            )
        clients = [n.client() for n in cluster.nodes]
        per = 16384 // masters
        for i, client in enumerate(clients):
            end = 16383 if i == masters - 1 else (i + 1) * per - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, end)
        for node in cluster.nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)

        def ready() -> bool:
            for client in clients:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text or f"cluster_known_nodes:{masters}" not in text:
                    return False
            return True

        wait_until(ready, 20, "cluster_state:ok on every node")
        for client in clients:
            client.close()
        yield cluster
    finally:
        cluster.stop()


@dataclass
class SentinelSetup:
    master: RedisProcess
    replica: RedisProcess
    sentinel: RedisProcess
    service: str = "drc"

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}/0"

    def master_port(self) -> int:
        addr = self.sentinel.client().execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
        )
        return int(addr[1])

    def stop(self) -> None:
        for proc in (self.sentinel, self.replica, self.master):
            proc.stop()


@contextlib.contextmanager
def running_sentinel(tmp: Path) -> Iterator[SentinelSetup]:
    """One master, one replica (in sync) and one sentinel watching them."""
    started: list[RedisProcess] = []
    try:
        master = start_server(tmp, free_port(), "--repl-diskless-sync-delay", "0")
        started.append(master)
        replica = start_server(tmp, free_port(), "--replicaof", "127.0.0.1", str(master.port))
        started.append(replica)
        wait_until(
            lambda: replica.client().info("replication").get("master_link_status") == "up",
            10,
            "replica in sync",
        )
        wait_until(
            lambda: master.client().info("replication").get("slave0", {}).get("state") == "online",
            10,
            "replica online on the master",
        )
        wait_until(
            lambda: master.client().execute_command("WAIT", 1, 200) == 1, 10, "replica acks"
        )
        sport = free_port()
        conf = (
            f"port {sport}\nbind 127.0.0.1\n"
            f"sentinel monitor drc 127.0.0.1 {master.port} 1\n"
            "sentinel down-after-milliseconds drc 1000\n"
            "sentinel failover-timeout drc 5000\n"
            "sentinel parallel-syncs drc 1\n"
        )
        sentinel = start_server(tmp, sport, sentinel_conf=conf)
        started.append(sentinel)
        setup = SentinelSetup(master, replica, sentinel)

        def knows_replica() -> bool:
            replicas = sentinel.client().sentinel_slaves("drc")
            return any(
                r.get("is_slave") and not r.get("is_sdown") and not r.get("is_disconnected")
                for r in replicas
            )

        wait_until(knows_replica, 20, "sentinel to discover the replica")
        yield setup
    finally:
        for proc in reversed(started):
            proc.stop()


_REGISTRY_AGE = """
local t = redis.call('TIME')
local born = redis.call('GET', KEYS[2])
if not born or redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(born)
"""


def registry_age(near: Any) -> float:
    """Seconds since ``near``'s peer registry was (re)created, on Redis's clock (-0.001 if
    it or its marker is missing)."""
    client = near._script_client()
    return int(client.eval(_REGISTRY_AGE, 2, near.peers_key, near.born_key)) / 1000


def settle_registry(near: Any, timeout: float = 10) -> None:
    """Wait until ``near``'s registry is older than a registration (``2 * lease``): before
    that, every invalidation waits out the lease (peers registered before may be missing)."""
    wait_until(
        lambda: registry_age(near) > 2 * near.lease + 0.01, timeout, "an old enough registry"
    )
