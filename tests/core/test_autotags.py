"""The automatic tag names: equal values meet, different values never collide."""

from __future__ import annotations

import uuid
from decimal import Decimal

from flask_dataroom_cache.autotags import column_tag, epoch_tag, row_tag, table_tag, value_text


def test_equal_numbers_share_one_text() -> None:
    assert value_text(1) == value_text(1.0) == value_text(Decimal("1.00")) == value_text(True)
    assert value_text(Decimal("1.50")) == value_text(1.5)
    assert value_text(2) != value_text("2x")


def test_none_and_the_string_null_differ() -> None:
    assert value_text(None) != value_text("~null")
    assert value_text(None) != value_text("None")


def test_values_cannot_forge_another_tag() -> None:
    assert column_tag("file", "folder_id", "1,2") != column_tag("file", "folder_id", 1)
    assert row_tag("a:b", [1]) != row_tag("a", ["b:1"])
    assert row_tag("t", [1, 2]) != row_tag("t", ["1,2"])
    assert ":" not in value_text("a:b")


def test_the_four_names() -> None:
    assert table_tag("public.file") == "~t:public.file"
    assert epoch_tag("file") == "~e:file"
    assert row_tag("file", [7]) == "~r:file:7"
    assert column_tag("file", "folder_id", 3) == "~c:file:folder_id=3"
    u = uuid.UUID(int=5)
    assert value_text(u) == value_text(uuid.UUID(u.hex))


def test_value_columns_are_foreign_keys_plus_declared() -> None:
    import sqlalchemy as sa

    from flask_dataroom_cache.autotags import ValueColumns

    md = sa.MetaData()
    sa.Table("parent", md, sa.Column("id", sa.Integer, primary_key=True))
    child = sa.Table(
        "child",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.ForeignKey("parent.id")),
        sa.Column("slug", sa.String),
        sa.Column("name", sa.String),
    )
    cols = ValueColumns()
    assert cols.of(child) == {"parent_id"}
    cols.declare("child", ["slug"])
    assert cols.of(child) == {"parent_id", "slug"}
