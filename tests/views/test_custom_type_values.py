"""A ``@cache.cached`` function returning a registered class is cached (issue 15).

The codec rebuilds a registered class to the same type and value, so such a value passes
the "comes back identical" rule of function values (returns.py) and is stored; an
unregistered class is still returned as is and not cached.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from .conftest import ViewsApp
from .test_return_values import _collect


@dataclasses.dataclass
class Row:
    id: int
    price: Decimal


@dataclasses.dataclass
class Unregistered:
    id: int


def test_cached_function_returning_a_registered_dataclass_is_cached(views_app: Any) -> None:
    va: ViewsApp = views_app()
    va.cache.register_type(Row)
    value = [Row(1, Decimal("2.50")), Row(2, Decimal("0.10"))]

    @va.cache.cached(shared=True, tags=["room:1"])
    def rows() -> Any:
        va.calls["rows"] += 1
        return value

    seen = _collect(va, rows)
    assert all(got == value and type(got[0]) is Row for got in seen)
    assert va.calls["rows"] == 4  # the second plain GET was a hit


def test_cached_function_returning_an_unregistered_class_is_not_cached(
    views_app: Any,
) -> None:
    va: ViewsApp = views_app()

    @va.cache.cached(shared=True, tags=["room:1"])
    def rows() -> Any:
        va.calls["rows"] += 1
        return [Unregistered(1)]

    seen = _collect(va, rows)
    assert all(got == [Unregistered(1)] for got in seen)
    assert va.calls["rows"] == 5  # never a hit
