"""Many-to-many associations (issue 12, item 3): a change of an association row invalidates
BOTH rows it links, however it is made: an ORM collection append/remove from either side
(back_populates pairs, a one-directional relationship over the same secondary, a
self-referential pair), Core DML on the association table (insert, executemany, delete with
and without WHERE, update), and the delete of either side (the ORM removing the secondary
rows, or the database's ``ON DELETE CASCADE``, also two levels down).

Every test runs twice: with the association tables declared (``cache.track(table, ...)``)
and undeclared (detected: a ``secondary=`` table whose foreign keys reference tracked
models). The views are tagged ONLY with the entity tag of the side whose related rows they
list (``account:{id}`` for "the articles this account favorited", ``article:{id}`` for
"the accounts that favorited this article"), so a missed side serves stale data.

Data::

    accounts 1 ann, 2 bob, 3 cy
    articles 10 (by ann), 11 (by bob), 12 (by cy)
    favorites (1, 10) (2, 10) (1, 11)
    follows   1 -> 2, 3 -> 2
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from flask_dataroom_cache import (
    DataRoomCache,
    entity_tag,
    get_cache_key,
    list_tag,
    user_tag,
)
from flask_dataroom_cache.tracking import links

from .conftest import CountingBackend, sqlite_fk


class M2MBase(DeclarativeBase):
    pass


FAVORITES = sa.Table(
    "favorites",
    M2MBase.metadata,
    sa.Column("user_id", ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("article_id", ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
)

FOLLOWS = sa.Table(
    "follows",
    M2MBase.metadata,
    sa.Column("follower_id", ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("followed_id", ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
)


class Account(M2MBase):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    favorites: Mapped[list[Article]] = relationship(
        secondary=FAVORITES, back_populates="favoriters"
    )
    # a second writable relationship over the same secondary, without a backref
    starred: Mapped[list[Article]] = relationship(
        secondary=FAVORITES, overlaps="favorites,favoriters", passive_deletes=True
    )
    following: Mapped[list[Account]] = relationship(
        secondary=FOLLOWS,
        primaryjoin=lambda: Account.id == FOLLOWS.c.follower_id,
        secondaryjoin=lambda: Account.id == FOLLOWS.c.followed_id,
        back_populates="followers",
    )
    followers: Mapped[list[Account]] = relationship(
        secondary=FOLLOWS,
        primaryjoin=lambda: Account.id == FOLLOWS.c.followed_id,
        secondaryjoin=lambda: Account.id == FOLLOWS.c.follower_id,
        back_populates="following",
    )


class Article(M2MBase):
    __tablename__ = "articles"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(40))
    author_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    favoriters: Mapped[list[Account]] = relationship(
        secondary=FAVORITES, back_populates="favorites", overlaps="starred"
    )


ACCOUNTS = (1, 2, 3)
ARTICLES = (10, 11, 12)


class M2M:
    """One app with the models above; cached views and their fresh versions."""

    def __init__(self, app: Flask, db: SQLAlchemy, cache: DataRoomCache) -> None:
        self.app, self.db, self.cache = app, db, cache
        self.store = cache.state(app).store
        self.backend = CountingBackend(self.store.backend)
        self.store.backend = self.backend  # type: ignore[assignment]
        self.computed: list[tuple[str, int]] = []
        self.keep: list[Any] = []

    @property
    def session(self) -> Any:
        return self.db.session

    # -- fresh reads ------------------------------------------------------------------
    def favorites_fresh(self, uid: int) -> list[str]:
        q = (
            sa.select(Article.title)
            .join(FAVORITES, FAVORITES.c.article_id == Article.id)
            .where(FAVORITES.c.user_id == uid)
        )
        return sorted(self.session.scalars(q))

    def favoriters_fresh(self, aid: int) -> list[str]:
        q = (
            sa.select(Account.name)
            .join(FAVORITES, FAVORITES.c.user_id == Account.id)
            .where(FAVORITES.c.article_id == aid)
        )
        return sorted(self.session.scalars(q))

    def following_fresh(self, uid: int) -> list[str]:
        q = (
            sa.select(Account.name)
            .join(FOLLOWS, FOLLOWS.c.followed_id == Account.id)
            .where(FOLLOWS.c.follower_id == uid)
        )
        return sorted(self.session.scalars(q))

    def followers_fresh(self, uid: int) -> list[str]:
        q = (
            sa.select(Account.name)
            .join(FOLLOWS, FOLLOWS.c.follower_id == Account.id)
            .where(FOLLOWS.c.followed_id == uid)
        )
        return sorted(self.session.scalars(q))

    # -- cached views, tagged with the entity tag of the side they list for --------------
    def _cached(self, name: str, ident: int, entity: str, fresh: Callable[[int], Any]) -> Any:
        def compute() -> Any:
            self.computed.append((name, ident))
            return fresh(ident)

        key = get_cache_key(f"m2m-{name}", ident)
        return self.store.get_or_set(key, compute, tags=[entity_tag(entity, ident)])

    def favorites(self, uid: int) -> Any:
        return self._cached("favorites", uid, "account", self.favorites_fresh)

    def favoriters(self, aid: int) -> Any:
        return self._cached("favoriters", aid, "article", self.favoriters_fresh)

    def following(self, uid: int) -> Any:
        return self._cached("following", uid, "account", self.following_fresh)

    def followers(self, uid: int) -> Any:
        return self._cached("followers", uid, "account", self.followers_fresh)

    def fill(self) -> None:
        for uid in ACCOUNTS:
            self.favorites(uid), self.following(uid), self.followers(uid)
        for aid in ARTICLES:
            self.favoriters(aid)
        self.session.rollback()  # end the reading transaction (snapshot rule)
        self.computed.clear()

    def assert_fresh(self) -> None:
        """Every cached view equals a fresh read (a stale hit fails, naming the view)."""
        self.session.rollback()
        for uid in ACCOUNTS:
            assert self.favorites(uid) == self.favorites_fresh(uid), ("favorites", uid)
            assert self.following(uid) == self.following_fresh(uid), ("following", uid)
            assert self.followers(uid) == self.followers_fresh(uid), ("followers", uid)
        for aid in ARTICLES:
            assert self.favoriters(aid) == self.favoriters_fresh(aid), ("favoriters", aid)
        self.session.rollback()


def declare(cache: DataRoomCache, mode: str) -> None:
    if mode == "members":  # an account change invalidates that user's per-user entries
        cache.track(Account, entity="account", members=lambda account: [account.id])
    else:
        cache.track(Account, entity="account")
    cache.track(Article, entity="article", parents={"author_id": "account"})
    if mode == "declared":
        assert cache.track(FAVORITES, entity="favorite") is FAVORITES
        cache.track(FOLLOWS, parents={"follower_id": "user", "followed_id": "user"})


@contextmanager
def m2m_app(cache_config: dict[str, Any], database_url: str, mode: str) -> Iterator[M2M]:
    app = Flask(f"t_{uuid.uuid4().hex[:6]}")
    app.config.update(TESTING=True, **cache_config, SQLALCHEMY_DATABASE_URI=database_url)
    db = SQLAlchemy()
    cache = DataRoomCache()
    declare(cache, mode)
    db.init_app(app)
    cache.init_app(app)
    with app.app_context():
        sqlite_fk(db.engine)
        M2MBase.metadata.create_all(db.engine)
        env = M2M(app, db, cache)
        try:
            s = db.session
            s.add_all([Account(id=1, name="ann"), Account(id=2, name="bob")])
            s.add(Account(id=3, name="cy"))
            s.flush()
            s.add_all(
                [
                    Article(id=10, title="a10", author_id=1),
                    Article(id=11, title="a11", author_id=2),
                    Article(id=12, title="a12", author_id=3),
                ]
            )
            s.flush()
            s.execute(
                sa.insert(FAVORITES),
                [
                    {"user_id": 1, "article_id": 10},
                    {"user_id": 2, "article_id": 10},
                    {"user_id": 1, "article_id": 11},
                ],
            )
            s.execute(
                sa.insert(FOLLOWS),
                [{"follower_id": 1, "followed_id": 2}, {"follower_id": 3, "followed_id": 2}],
            )
            s.commit()
            s.expunge_all()
            env.fill()
            env.backend.reset()
            yield env
        finally:
            db.session.remove()
            M2MBase.metadata.drop_all(db.engine)
            db.engine.dispose()


@pytest.fixture(params=["declared", "detected"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def m2m(cache_config: dict[str, Any], database_url: str, mode: str) -> Iterator[M2M]:
    with m2m_app(cache_config, database_url, mode) as env:
        yield env


def changes(env: M2M) -> dict[str, Callable[[], Any]]:
    s = env.session
    fav = FAVORITES
    keep = env.keep  # the session holds objects weakly: keep them alive through the flush

    def get(cls: type, ident: int) -> Any:
        obj = s.get(cls, ident)
        keep.append(obj)
        return obj

    return {
        # ORM collections, from each side (back_populates pair), and one-directional
        "orm-append-account-side": lambda: get(Account, 3).favorites.append(get(Article, 10)),
        "orm-append-article-side": lambda: get(Article, 12).favoriters.append(get(Account, 1)),
        "orm-remove-account-side": lambda: get(Account, 1).favorites.remove(get(Article, 10)),
        "orm-remove-article-side": lambda: get(Article, 10).favoriters.remove(get(Account, 2)),
        "orm-replace-collection": lambda: setattr(get(Account, 1), "favorites", []),
        "orm-one-directional": lambda: get(Account, 2).starred.append(get(Article, 12)),
        # Core DML on the association table
        "core-insert": lambda: s.execute(sa.insert(fav).values(user_id=3, article_id=11)),
        "core-insert-many": lambda: s.execute(
            sa.insert(fav), [{"user_id": 3, "article_id": 10}, {"user_id": 2, "article_id": 12}]
        ),
        "core-insert-select": lambda: s.execute(
            sa.insert(fav).from_select(
                ["user_id", "article_id"],
                sa.select(sa.literal(3), Article.id).where(Article.id != 10),
            )
        ),
        "core-delete-where": lambda: s.execute(sa.delete(fav).where(fav.c.article_id == 11)),
        "core-delete-all": lambda: s.execute(sa.delete(fav)),
        "core-delete-executemany": lambda: s.connection().execute(
            sa.delete(fav).where(fav.c.user_id == sa.bindparam("u")), [{"u": 2}]
        ),
        "core-update": lambda: s.execute(
            sa.update(fav).where(fav.c.user_id == 2).values(article_id=12)
        ),
        "core-update-executemany": lambda: s.connection().execute(
            sa.update(fav)
            .where(fav.c.user_id == sa.bindparam("u"))
            .values(user_id=sa.bindparam("new_u")),
            [{"u": 2, "new_u": 3}],
        ),
        # deleting one side removes the other side's association rows
        "orm-delete-article": lambda: s.delete(get(Article, 10)),
        "orm-delete-account": lambda: s.delete(get(Account, 2)),
        "core-delete-article": lambda: s.execute(
            sa.delete(Article.__table__).where(Article.__table__.c.id == 10)
        ),
        "orm-bulk-delete-article": lambda: s.execute(sa.delete(Article).where(Article.id == 10)),
        "core-delete-account": lambda: s.execute(
            # the database cascades: account 2 -> its follows rows, its article 11 ->
            # that article's favorites rows (account 1's list)
            sa.delete(Account.__table__).where(Account.__table__.c.id == 2)
        ),
        # self-referential follows
        "follow-orm": lambda: get(Account, 1).following.append(get(Account, 3)),
        "unfollow-orm-reverse-side": lambda: get(Account, 2).followers.remove(get(Account, 1)),
        "follow-core": lambda: s.execute(sa.insert(FOLLOWS).values(follower_id=2, followed_id=3)),
        "unfollow-core": lambda: s.execute(
            sa.delete(FOLLOWS).where(FOLLOWS.c.followed_id == 2, FOLLOWS.c.follower_id == 3)
        ),
    }


CHANGES = [
    "orm-append-account-side",
    "orm-append-article-side",
    "orm-remove-account-side",
    "orm-remove-article-side",
    "orm-replace-collection",
    "orm-one-directional",
    "core-insert",
    "core-insert-many",
    "core-insert-select",
    "core-delete-where",
    "core-delete-all",
    "core-delete-executemany",
    "core-update",
    "core-update-executemany",
    "orm-delete-article",
    "orm-delete-account",
    "core-delete-article",
    "orm-bulk-delete-article",
    "core-delete-account",
    "follow-orm",
    "unfollow-orm-reverse-side",
    "follow-core",
    "unfollow-core",
]


@pytest.mark.parametrize("how", CHANGES)
def test_every_association_change_keeps_both_sides_fresh(m2m: M2M, how: str) -> None:
    before = (
        {u: m2m.favorites_fresh(u) for u in ACCOUNTS},
        {a: m2m.favoriters_fresh(a) for a in ARTICLES},
        {u: m2m.following_fresh(u) for u in ACCOUNTS},
    )
    m2m.session.rollback()
    changes(m2m)[how]()
    m2m.session.flush()
    assert m2m.backend.calls["invalidate"] == 0, "nothing before the commit"
    m2m.session.commit()
    after = (
        {u: m2m.favorites_fresh(u) for u in ACCOUNTS},
        {a: m2m.favoriters_fresh(a) for a in ARTICLES},
        {u: m2m.following_fresh(u) for u in ACCOUNTS},
    )
    assert after != before, "the change must change what a view shows"
    m2m.assert_fresh()


@pytest.mark.parametrize("how", CHANGES)
def test_rolled_back_association_change_invalidates_nothing(m2m: M2M, how: str) -> None:
    s = m2m.session
    changes(m2m)[how]()
    s.flush()
    s.rollback()
    assert m2m.backend.calls["invalidate"] == 0
    # inside a savepoint rolled back, then an unrelated commit: still nothing of it
    s.add(Account(id=4, name="dee"))
    sp = s.begin_nested()
    changes(m2m)[how]()
    s.flush()
    sp.rollback()
    s.commit()
    assert m2m.backend.all_invalidated() <= {
        entity_tag("account", 4),
        list_tag("account"),
    }, m2m.backend.all_invalidated()
    m2m.assert_fresh()
    assert m2m.computed == [], "every view still a hit: nothing was invalidated"


def test_core_dml_on_a_plain_connection(m2m: M2M) -> None:
    with m2m.db.engine.begin() as conn:
        conn.execute(sa.insert(FAVORITES).values(user_id=3, article_id=12))
        conn.execute(sa.delete(FOLLOWS).where(FOLLOWS.c.follower_id == 1))
        assert m2m.backend.calls["invalidate"] == 0
    m2m.assert_fresh()
    with m2m.db.engine.connect() as conn:
        conn.execute(sa.delete(FAVORITES))
        conn.rollback()
    assert m2m.favorites(1) == ["a10", "a11"]


def test_both_sides_get_the_tags_of_an_update(m2m: M2M, mode: str) -> None:
    """An association row change counts as an update of both rows it links: each side's
    entity tag, list tag and parent tags; a declared table adds its own tags and the
    tags its ``parents=`` name."""
    s = m2m.session
    s.execute(sa.insert(FAVORITES).values(user_id=3, article_id=11))
    s.execute(sa.insert(FOLLOWS).values(follower_id=2, followed_id=3))
    s.commit()
    sent = m2m.backend.all_invalidated()
    expected = {
        entity_tag("account", 3),
        entity_tag("article", 11),
        entity_tag("account", 2),  # article 11's author (its parent)
        list_tag("account"),
        list_tag("article"),
    }
    assert expected <= sent, expected - sent
    declared = {
        list_tag("favorite"),
        "type:favorite",
        user_tag(2),
        user_tag(3),
        list_tag("follows"),
    }
    if mode == "declared":
        assert declared <= sent, declared - sent
    else:
        assert not (declared & sent), declared & sent


def test_track_accepts_a_table_and_checks_its_options() -> None:
    cache = DataRoomCache()
    table = sa.Table(
        "likes",
        sa.MetaData(),
        sa.Column("a_id", sa.Integer, primary_key=True),
        sa.Column("b_id", sa.Integer, primary_key=True),
    )
    assert cache.track(table) is table
    assert cache.track(table, entity="like", parents={"a_id": "user"}, sides=["b_id"]) is table
    with pytest.raises(ValueError, match=r"likes.*nope"):
        cache.track(table, parents={"nope": "user"})
    with pytest.raises(ValueError, match=r"likes.*nope"):
        cache.track(table, sides=["nope"])
    with pytest.raises(TypeError):
        cache.track(table, members=lambda row: [])
    assert cache.track(entity="like")(table) is table  # the decorator form too


@pytest.mark.parametrize("entity", ["user", "type", "~epoch"])
def test_an_association_table_with_a_reserved_entity_name_is_refused(entity: str) -> None:
    """The reserved-namespace rule of model declarations holds for tables too: an
    association named ``user`` would bump ``user:{id}`` of unrelated users."""
    from flask_dataroom_cache.rule_checks import DeclarationError

    table = sa.Table(
        "user",
        sa.MetaData(),
        sa.Column("a_id", sa.Integer, primary_key=True),
        sa.Column("b_id", sa.Integer, primary_key=True),
    )
    cache = DataRoomCache()
    with pytest.raises(DeclarationError, match=r"user.*reserved"):
        cache.track(table, entity=entity) if entity != "user" else cache.track(table)


def test_textual_sql_on_an_association_table(m2m: M2M, mode: str) -> None:
    """Textual SQL: the rows are unknown; its own and each side's type and list tags."""
    s = m2m.session
    s.execute(sa.text("DELETE FROM favorites WHERE user_id = 2"))
    s.commit()
    sent = m2m.backend.all_invalidated()
    assert {"type:account", "type:article", list_tag("account"), list_tag("article")} <= sent
    assert ("type:favorite" in sent) is (mode == "declared")


def test_sides_with_members_are_loaded_as_objects(
    cache_config: dict[str, Any], database_url: str
) -> None:
    """A side whose rule has ``members=`` (or a ``cache_tags`` hook) gets those tags too:
    its rows are loaded as objects inside the transaction, on the ORM path, on the Core
    path, and for rows a database cascade removes."""
    with m2m_app(cache_config, database_url, "members") as env:
        s = env.session
        account = s.get(Account, 3)
        account.favorites.append(s.get(Article, 12))
        s.commit()
        assert {user_tag(3), entity_tag("account", 3)} <= env.backend.all_invalidated()
        env.backend.reset()
        s.execute(sa.delete(FOLLOWS).where(FOLLOWS.c.follower_id == 1))
        s.commit()
        assert {user_tag(1), user_tag(2)} <= env.backend.all_invalidated()
        env.backend.reset()
        s.execute(sa.delete(Article.__table__).where(Article.__table__.c.id == 10))
        s.commit()
        assert {user_tag(1), user_tag(2)} <= env.backend.all_invalidated()  # its favoriters
        env.assert_fresh()


def test_statements_above_the_row_cap_use_the_sides_type_tags(
    m2m: M2M, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(links, "SIDE_ROW_CAP", 1)
    s = m2m.session
    s.execute(sa.delete(FAVORITES))  # 3 rows, 2 accounts, 2 articles: above the cap
    s.commit()
    sent = m2m.backend.all_invalidated()
    assert {"type:account", "type:article", list_tag("account"), list_tag("article")} <= sent
    assert entity_tag("account", 1) not in sent  # the type tag stands for the ids
    env_tags = {entity_tag("account", 3), entity_tag("article", 12)}
    m2m.backend.reset()
    s.execute(sa.insert(FAVORITES).values(user_id=3, article_id=12))  # one row: exact
    s.commit()
    assert env_tags <= m2m.backend.all_invalidated()


def test_an_unmapped_table_linking_tracked_rows_is_detected(
    cache_config: dict[str, Any], database_url: str
) -> None:
    """An association table no relationship uses (Core only) and nobody declared: its two
    foreign keys reference tracked tables, so it is detected like a ``secondary``."""
    reads = sa.Table(
        "reads",
        M2MBase.metadata,
        sa.Column("reader_id", ForeignKey("accounts.id", ondelete="CASCADE")),
        sa.Column("article_id", ForeignKey("articles.id", ondelete="CASCADE")),
    )
    try:
        with m2m_app(cache_config, database_url, "detected") as env:
            s = env.session
            s.execute(sa.insert(reads).values(reader_id=1, article_id=12))
            s.commit()
            sent = env.backend.all_invalidated()
            assert {entity_tag("account", 1), entity_tag("article", 12)} <= sent
            env.backend.reset()
            # no primary key: the rows the database deletes with an account are still read
            s.execute(sa.delete(Account.__table__).where(Account.__table__.c.id == 1))
            s.commit()
            assert entity_tag("article", 12) in env.backend.all_invalidated()
    finally:
        M2MBase.metadata.remove(reads)


class _MappedBase(DeclarativeBase):
    pass


class Reader(_MappedBase):
    __tablename__ = "readers"
    id: Mapped[int] = mapped_column(primary_key=True)
    books: Mapped[list[Book]] = relationship(secondary="bookmarks", viewonly=True)


class Book(_MappedBase):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)


class Bookmark(_MappedBase):
    """An association object: mapped (not tracked) AND the ``secondary`` of a relationship."""

    __tablename__ = "bookmarks"
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"), primary_key=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("books.id"), primary_key=True)


def test_a_mapped_association_object_used_as_secondary(
    cache_config: dict[str, Any], database_url: str
) -> None:
    """Its rows are written by the unit of work as objects and by ORM bulk statements:
    both invalidate the two sides."""
    app = Flask(f"t_{uuid.uuid4().hex[:6]}")
    app.config.update(TESTING=True, **cache_config, SQLALCHEMY_DATABASE_URI=database_url)
    db = SQLAlchemy()
    cache = DataRoomCache()
    cache.track(Reader, entity="reader")
    cache.track(Book, entity="book")
    db.init_app(app)
    cache.init_app(app)
    with app.app_context():
        sqlite_fk(db.engine)
        _MappedBase.metadata.create_all(db.engine)
        backend = CountingBackend(cache.state(app).store.backend)
        cache.state(app).store.backend = backend  # type: ignore[assignment]
        try:
            s = db.session
            s.add_all([Reader(id=1), Book(id=5)])
            s.commit()
            backend.reset()
            s.add(Bookmark(reader_id=1, book_id=5))
            s.commit()
            assert {entity_tag("reader", 1), entity_tag("book", 5)} <= backend.all_invalidated()
            backend.reset()
            s.execute(sa.delete(Bookmark).where(Bookmark.reader_id == 1))
            s.commit()
            assert {entity_tag("reader", 1), entity_tag("book", 5)} <= backend.all_invalidated()
            assert s.scalar(sa.select(sa.func.count()).select_from(Bookmark)) == 0
        finally:
            db.session.remove()
            _MappedBase.metadata.drop_all(db.engine)
            db.engine.dispose()
