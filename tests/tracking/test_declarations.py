"""Issue 12 item 3c: a ``cache.track`` declaration that cannot work raises, naming the
model and the name, instead of silently sending only ``{entity}:list``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from flask_dataroom_cache import DataRoomCache, entity_tag, list_tag, user_tag
from flask_dataroom_cache.tracking import registry_of

from .conftest import Env
from .models import DataRoom, Folder, Membership
from .test_semantics import seed


@pytest.fixture
def configured() -> None:
    sa.orm.configure_mappers()  # the test models' mappers, as after the app's first query


# -- attribute names, mapper already configured: raise at declaration ---------------------


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(
    ("options", "attr"),
    [
        ({"parents": {"data_room": "dataroom"}}, "data_room"),  # misspelled key
        ({"parents": {"data_room_id": "dataroom", "parentid": "folder"}}, "parentid"),
        ({"parents": {"parent": "folder"}}, "parent"),  # a relationship, not a column
        ({"id_attr": "ident"}, "ident"),
        ({"id_attr": "children"}, "children"),
    ],
)
def test_a_wrong_attribute_name_raises_naming_model_and_attribute(
    options: dict[str, Any], attr: str
) -> None:
    cache = DataRoomCache()
    with pytest.raises(ValueError, match=rf"Folder.*'{attr}'"):
        cache.track(Folder, entity="folder", **options)
    assert registry_of(cache).rule_for(Folder) is None, "the bad declaration is not kept"


@pytest.mark.usefixtures("configured")
def test_a_relationship_named_as_parent_says_so() -> None:
    with pytest.raises(ValueError, match="Relationship"):
        DataRoomCache().track(Folder, entity="folder", parents={"parent": "folder"})


@pytest.mark.usefixtures("configured")
def test_decorator_form_raises_too() -> None:
    cache = DataRoomCache()
    with pytest.raises(ValueError, match=r"Membership.*'userid'"):
        cache.track(entity="membership", parents={"userid": "user"})(Membership)


# -- attribute names, mapper not configured yet: raise when SQLAlchemy configures it ------


@pytest.fixture
def fresh_models() -> Iterator[tuple[type, type, Any]]:
    """Two models on their own registry, not configured yet (the usual state while an
    app's modules are imported); the registry is disposed afterwards, so a mapper left
    failed never disturbs other tests."""

    class Base(DeclarativeBase):
        pass

    class Author(Base):
        __tablename__ = "authors"
        id: Mapped[int] = mapped_column(primary_key=True)
        books: Mapped[list[Book]] = relationship(back_populates="author")

    class Book(Base):
        __tablename__ = "books"
        id: Mapped[int] = mapped_column(primary_key=True)
        author_id: Mapped[int] = mapped_column(sa.ForeignKey("authors.id"))
        author: Mapped[Author] = relationship(back_populates="books")

    assert not sa.inspect(Book).configured
    try:
        yield Author, Book, Base.registry
    finally:
        Base.registry.dispose()


def test_unconfigured_mapper_is_checked_when_configured(fresh_models: Any) -> None:
    _author, book, registry = fresh_models
    cache = DataRoomCache()
    cache.track(book, entity="book", parents={"autor_id": "author"})  # mapper not ready
    with pytest.raises(ValueError, match=r"Book.*'autor_id'.*author_id"):
        registry.configure()


def test_unconfigured_valid_declaration_configures_and_tags(fresh_models: Any) -> None:
    _author, book, registry = fresh_models
    cache = DataRoomCache()
    cache.track(book, entity="book", id_attr="id", parents={"author_id": "author"})
    registry.configure()
    rule = registry_of(cache).rule_for(book)
    assert rule is not None
    obj = book(id=7, author_id=3)
    assert rule.tags(obj, "insert") == {"book:7", "book:list", "author:3"}


def test_a_corrected_declaration_replaces_the_pending_check(fresh_models: Any) -> None:
    _author, book, registry = fresh_models
    cache = DataRoomCache()
    cache.track(book, entity="book", parents={"autor_id": "author"})
    cache.track(book, entity="book", parents={"author_id": "author"})  # fixed before use
    registry.configure()  # no error: the first declaration's check was detached
    assert registry_of(cache).rule_for(book).parents == {"author_id": "author"}  # type: ignore[union-attr]


def test_an_unmapped_base_class_is_not_checked() -> None:
    cache = DataRoomCache()

    @cache.track(entity="thing", parents={"owner_id": "user"})
    class Thing:
        pass

    assert registry_of(cache).rule_for(Thing) is not None


# -- reserved names ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["user", "type", "~epoch"])
def test_a_reserved_entity_name_is_refused(name: str) -> None:
    cache = DataRoomCache()
    with pytest.raises(ValueError, match=rf"DataRoom.*{name!r}.*reserved"):
        cache.track(DataRoom, entity=name)

    class Plain:  # refused at declaration, mapped or not
        pass

    with pytest.raises(ValueError, match="reserved"):
        cache.track(Plain, entity=name)


@pytest.mark.parametrize("name", ["type", "~epoch"])
def test_a_reserved_parent_type_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=rf"parent type {name!r} is reserved"):
        DataRoomCache().track(Folder, entity="folder", parents={"parent_id": name})


def test_a_user_model_declares_its_per_user_tag_through_parents(configured: None, env: Env) -> None:
    """The way the refusal's message suggests: another entity name, ``parents={"id":
    "user"}`` for the per-user entries, kept apart from the entity's own tags."""
    env.cache.track(Membership, entity="member", parents={"id": "user"}, list_tag=False)
    seed(env)
    env.session.get(Membership, 1000).user_id = "u2"
    env.session.commit()
    sent = env.backend.all_invalidated()
    assert {entity_tag("member", 1000), user_tag(1000)} <= sent
    assert list_tag("member") not in sent


# -- members ---------------------------------------------------------------------------------


def test_members_returning_a_string_raises_naming_the_model(env: Env) -> None:
    seed(env)
    env.cache.track(DataRoom, entity="dataroom", members=lambda room: "u1")
    env.session.get(DataRoom, 1).name = "renamed"
    with pytest.raises(TypeError, match="DataRoom: members"):
        env.session.commit()
    env.session.rollback()
    assert env.backend.calls["invalidate"] == 0
