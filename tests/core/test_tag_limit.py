"""One limit of tags per entry, written in three places: ``tags.MAX_TAGS_PER_ENTRY`` (what
a fill may stamp), ``get.lua`` (what a Redis read accepts) and ``layout.parse_frame`` (the
same rule in Python, for ``inspect``). Raising one without the others would make entries
with more tags never hit on Redis, silently: this test keeps them equal."""

from __future__ import annotations

import re
from importlib import resources

from flask_dataroom_cache.backends.redis import layout
from flask_dataroom_cache.tags import MAX_TAGS_PER_ENTRY


def test_get_lua_accepts_exactly_the_tags_a_fill_may_stamp() -> None:
    script = (
        resources.files("flask_dataroom_cache.backends.redis")
        .joinpath("scripts/get.lua")
        .read_text()
    )
    limits = re.findall(r"n <= (\d+)", script)
    assert limits == [str(MAX_TAGS_PER_ENTRY)]


def test_parse_frame_accepts_exactly_the_tags_a_fill_may_stamp() -> None:
    tags = [f"t{i}" for i in range(MAX_TAGS_PER_ENTRY)]
    raw = layout.frame(tags, ["v"] * len(tags), b"x")
    assert layout.parse_frame(raw) == (tuple(tags), ("v",) * len(tags), b"x")
    over = [*tags, "one-more"]
    assert layout.parse_frame(layout.frame(over, ["v"] * len(over), b"x")) is None
