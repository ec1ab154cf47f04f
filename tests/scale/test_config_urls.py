"""Multi-host Redis URLs (Cluster, Sentinel) validate and parse."""

from __future__ import annotations

import pytest

from flask_dataroom_cache.backends.redis import parse_multi_host_url, url_options
from flask_dataroom_cache.config import ConfigError, Settings


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002",
        "redis+cluster://127.0.0.1:7000",
        "redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7000?shard_groups=8",
        "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/2",
        "redis+sentinel://127.0.0.1:26379/mymaster",
    ],
)
def test_multi_host_urls_are_accepted(url: str) -> None:
    assert Settings.from_mapping({"REDIS_URL": url}, environ={}).redis_url == url


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1:x,127.0.0.1:7001",
        "redis+cluster://,127.0.0.1:7001",
        "redis+sentinel://127.0.0.1:26379",
        "redis://127.0.0.1:notaport/0",
    ],
)
def test_bad_multi_host_urls_name_the_key(url: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        Settings.from_mapping({"REDIS_URL": url}, environ={})


def test_parse_multi_host_url() -> None:
    hosts, creds, path = parse_multi_host_url(
        "redis+sentinel://user:s%40cret@h1:26379,h2/mymaster/3?wait_replicas=2"
    )
    assert hosts == [("h1", 26379), ("h2", 26379)]
    assert creds == {"username": "user", "password": "s@cret"}
    assert path == "mymaster/3"
    assert url_options("redis+sentinel://h1/m?wait_replicas=2") == {"wait_replicas": "2"}
    hosts, creds, path = parse_multi_host_url("redis+cluster://:pw@h1:7000,h2:7001")
    assert hosts == [("h1", 7000), ("h2", 7001)] and creds == {"password": "pw"} and path == ""
