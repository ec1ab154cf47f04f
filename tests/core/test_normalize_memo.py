"""``normalize_tags``'s memo: the same answers and the same errors as without it."""

from __future__ import annotations

from typing import Any

import pytest

from flask_dataroom_cache import tags as tags_module
from flask_dataroom_cache.tags import EPOCH_TAG, normalize_tags


def test_memo_answers_like_the_checks() -> None:
    lists: list[Any] = [["b", "a", "b"], ("a",), [], ["folder:1/contents", "user:u"]]
    for tags in lists:
        want = tags_module._normalize(tags)
        assert normalize_tags(tags) == want
        assert normalize_tags(list(tags)) == want  # from the memo
        assert EPOCH_TAG in want and list(want) == sorted(set(want))


@pytest.mark.parametrize(
    "bad", [["ok", ""], ["ok", "a\nb"], ["ok", 1], ["ok", ["nested"]], ["ok", None]]
)
def test_invalid_lists_always_raise(bad: list[Any]) -> None:
    normalize_tags(["ok"])
    for _ in range(2):  # never remembered
        with pytest.raises(ValueError):
            normalize_tags(bad)


def test_other_iterables_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert normalize_tags(t for t in ["x", "y"]) == normalize_tags(["y", "x"])
    assert normalize_tags(None) == (EPOCH_TAG,)
    with pytest.raises(TypeError):
        normalize_tags("a-string")
    monkeypatch.setattr(tags_module, "_NORMALIZED", {})
    monkeypatch.setattr(tags_module, "_NORMALIZED_MAX", 3)
    for i in range(10):
        normalize_tags([f"t{i}"])
        assert len(tags_module._NORMALIZED) <= 3
