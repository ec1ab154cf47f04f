"""Fixtures of the scale-out tests: a real 3-master Redis Cluster and a Sentinel setup."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import Cluster, RedisProcess, free_port, running_cluster, start_server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Shared by the Cluster tests (each uses its own key prefix); stopped at the end."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A standalone redis-server of our own (pub/sub tests, kill/restart allowed)."""
    tmp: Path = tmp_path_factory.mktemp("own")
    server = start_server(tmp, free_port())
    try:
        yield server
    finally:
        server.stop()
