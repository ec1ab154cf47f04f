"""Key naming (injective, escaped, bounded) and the tag scheme."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_dataroom_cache import (
    DataRoomCache,
    contents_tag,
    dataroom_tag,
    entity_tag,
    get_cache_key,
    get_cache_tags,
    list_tag,
    type_tag,
    user_tag,
)
from flask_dataroom_cache.keys import MAX_KEY_BYTES, build_key, escape
from flask_dataroom_cache.tags import EPOCH_TAG, normalize_tags

# What an unhashed key may contain: the safe alphabet, the separators, escapes, and "~".
_KEY_CHARS = re.compile(r"^[A-Za-z0-9\-_.,@+:=%~]*$")


def test_issue_examples() -> None:
    assert get_cache_key("dataroom", user_id="abc123") == "dataroom:dataroom:user_id=abc123"
    assert (
        get_cache_key("file", "list", dataRoomId="xyz789", folderId="def456")
        == "dataroom:file:list:dataRoomId=xyz789:folderId=def456"
    )


def test_params_sorted_by_name_and_prefix_from_config() -> None:
    assert get_cache_key("file", b=1, a=2) == get_cache_key("file", a=2, b=1)
    assert get_cache_key("file", b=1, a=2) == "dataroom:file:a=2:b=1"
    app = Flask("keys")
    app.config.update(CACHE_KEY_PREFIX="acme", REDIS_URL="")
    DataRoomCache(app)
    with app.app_context():
        assert get_cache_key("file", 7, v=None) == "acme:file:7:v=~"


@pytest.mark.parametrize(
    "value",
    ["a:b", "a=b", "a*", "a?", "a[b]", "a b", "a\nb", "é", "日本", "a%3Ab", "~", "a#b", "a/b",
     "{x}", "\\", "", "\ud800", "\U0001f600"],
)
def test_special_characters_are_escaped(value: str) -> None:
    key = get_cache_key("file", value, q=value)
    head = "dataroom:file:"
    assert key.startswith(head)
    rest = key[len(head) :]
    component, _, param = rest.partition(":")
    assert ":" not in component and "=" not in component
    assert param.startswith("q=") and ":" not in param and "=" not in param[2:]
    for ch in "*?[]{} \n\\#/":
        assert ch not in key
    assert key.isascii()
    # A key is never a pattern: as a glob it matches exactly itself.
    assert fnmatchcase(key, key)
    assert _KEY_CHARS.match(key)


def test_values_cannot_forge_separators() -> None:
    pairs = [
        (get_cache_key("file", "a:b"), get_cache_key("file", "a", b=None)),
        (get_cache_key("file", x="1:y=2"), get_cache_key("file", x="1", y="2")),
        (get_cache_key("file", "a=b"), get_cache_key("file", a="b")),
        (get_cache_key("file", None, x=None), get_cache_key("file", x="~")),
        (get_cache_key("a:b"), get_cache_key("a", "b")),
        (get_cache_key("file", ""), get_cache_key("file")),
        (get_cache_key("file", **{"a=b": "c"}), get_cache_key("file", a="b=c")),
    ]
    for left, right in pairs:
        assert left != right


def test_non_string_components() -> None:
    u = uuid.UUID(int=5)
    assert get_cache_key("file", u) == f"dataroom:file:{u}"
    assert get_cache_key("file", 5) == get_cache_key("file", "5")  # ids from URLs or the DB
    assert get_cache_key("file", True) != get_cache_key("file", 1)
    assert get_cache_key("file", Decimal("1.50")) == "dataroom:file:1.50"
    with pytest.raises(TypeError, match="list"):
        get_cache_key("file", [1, 2])
    with pytest.raises(TypeError):
        get_cache_key("", 1)


def test_long_keys_keep_a_readable_head_and_end_in_a_hash() -> None:
    long_a = get_cache_key("file", "list", folderId="f" * 300)
    long_b = get_cache_key("file", "list", folderId="f" * 299 + "g")
    for key in (long_a, long_b):
        assert len(key.encode()) <= MAX_KEY_BYTES
        assert key.startswith("dataroom:file:list:folderId=fff")
        assert re.search(r"#[0-9a-f]{40}$", key)
    assert long_a != long_b
    assert long_a == get_cache_key("file", "list", folderId="f" * 300)  # stable
    # Non-ASCII expands to escapes; the bound is in bytes of the final key.
    wide = get_cache_key("file", "日" * 100)
    assert len(wide.encode()) <= MAX_KEY_BYTES and "#" in wide
    # Just under the bound: not hashed.
    short = build_key("p", "e", "x" * (MAX_KEY_BYTES - 4))
    assert len(short) == MAX_KEY_BYTES and "#" not in short


_any_str = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)

_values = st.one_of(
    st.none(),
    st.text(max_size=40),
    _any_str,  # lone surrogates included
    st.text(alphabet=":=*?[] \n%~#é", max_size=12),
    st.text(min_size=150, max_size=300),  # forces the hashed form
)
_calls = st.tuples(
    st.text(min_size=1, max_size=12),
    _values,
    st.dictionaries(st.text(max_size=8), _values, max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(_calls, _calls)
def test_get_cache_key_is_injective(a: Any, b: Any) -> None:
    key_a = build_key("p", a[0], a[1], a[2])
    key_b = build_key("p", b[0], b[1], b[2])
    assert (key_a == key_b) == (a == b)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_escape_is_injective_and_safe(text: str) -> None:
    out = escape(text)
    assert re.fullmatch(r"[A-Za-z0-9\-_.,@+%]*", out)
    # Decoding the percent escapes gives the original back: nothing is lost.
    from urllib.parse import unquote

    assert unquote(out, errors="strict") == text


# -- tags ------------------------------------------------------------------------------


def test_tag_scheme() -> None:
    assert get_cache_tags("folder", "list", data_room_id="r1", folder_id="f1", user_id="u1") == [
        "type:folder",
        "folder:list",
        "dataroom:r1",
        "folder:f1/contents",
        "user:u1",
    ]
    assert get_cache_tags("file", 42) == ["type:file", "file:42"]
    assert get_cache_tags("dataroom") == ["type:dataroom"]
    assert type_tag("file") == "type:file"
    assert entity_tag("file", 3) == "file:3"
    assert list_tag("file") == "file:list"
    assert dataroom_tag("r") == "dataroom:r"
    assert contents_tag("f") == "folder:f/contents"
    assert user_tag("u") == "user:u"
    assert dataroom_tag("r") == entity_tag("dataroom", "r")  # the room's own tag


def test_ids_cannot_forge_other_tags() -> None:
    assert entity_tag("folder", "a/contents") != contents_tag("a")
    assert contents_tag("a/contents") != contents_tag("a")
    assert user_tag("a:b") == "user:a%3Ab"
    assert dataroom_tag("1\n2").count("\n") == 0


def test_normalize_tags() -> None:
    assert normalize_tags(None) == (EPOCH_TAG,)
    assert normalize_tags(["b", "a", "b"]) == tuple(sorted({"a", "b", EPOCH_TAG}))
    with pytest.raises(TypeError):
        normalize_tags("file:1")
    for bad in ("", "a\nb", 5):
        with pytest.raises(ValueError):
            normalize_tags([bad])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        normalize_tags([f"t{i}" for i in range(100)])
