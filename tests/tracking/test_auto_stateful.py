"""Random queries and random writes with automatic dependencies only (issue 17).

Four related tables that nobody declares to the cache (``cache.track`` is never called for
them): authors, articles (``author_id`` foreign key), tags, and the many-to-many
``auto_article_tags``. A hypothesis ``RuleBasedStateMachine`` caches queries of every kind
(primary key, foreign key, range, join, aggregate, subquery, a many-to-many collection)
through ``get_or_set`` without tags, and writes through every path (ORM, bulk ORM, Core,
textual SQL). After every commit, every cached query must equal the database. Needs the
write side (the tracker bumping the tags of every row written).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .conftest import Env


class Base(DeclarativeBase):
    pass


article_tags = sa.Table(
    "auto_article_tags",
    Base.metadata,
    sa.Column(
        "article_id", sa.ForeignKey("auto_articles.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("tag_id", sa.ForeignKey("auto_tags.id", ondelete="CASCADE"), primary_key=True),
)


class Author(Base):
    __tablename__ = "auto_authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(40))


class Article(Base):
    __tablename__ = "auto_articles"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("auto_authors.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(sa.String(40))
    score: Mapped[int] = mapped_column(default=0)
    tags: Mapped[list[Tag]] = relationship(secondary=article_tags)


class Tag(Base):
    __tablename__ = "auto_tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(40))


AUTHORS = (1, 2, 3)
TAGS = (1, 2, 3)
ids = itertools.count(1)


def queries(env: Env) -> dict[str, Callable[[int], Any]]:
    """name -> query(parameter): each returns JSON data."""
    s = env.session
    return {
        "pk": lambda n: a.title if (a := s.get(Article, n)) is not None else None,
        "fk": lambda n: sorted(
            s.scalars(sa.select(Article.title).where(Article.author_id == n)).all()
        ),
        "range": lambda n: sorted(s.scalars(sa.select(Article.id).where(Article.score >= n)).all()),
        "join": lambda n: sorted(
            [
                list(r)
                for r in s.execute(
                    sa.select(Article.title, Author.name).join(Author).where(Author.id == n)
                )
            ]
        ),
        "aggregate": lambda n: [
            list(r)
            for r in s.execute(
                sa.select(Article.author_id, sa.func.count(), sa.func.sum(Article.score))
                .group_by(Article.author_id)
                .order_by(Article.author_id)
            )
        ],
        "subquery": lambda n: sorted(
            s.scalars(
                sa.select(Article.id).where(
                    Article.id.in_(
                        sa.select(article_tags.c.article_id).where(article_tags.c.tag_id == n)
                    )
                )
            ).all()
        ),
        "m2m": lambda n: (
            sorted(t.label for t in a.tags) if (a := s.get(Article, n)) is not None else None
        ),
    }


def make_machine(env: Env) -> type[RuleBasedStateMachine]:
    s = env.session

    class AutoMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            s.rollback()
            for table in reversed(Base.metadata.sorted_tables):
                s.execute(table.delete())
            s.add_all([Author(id=a, name=f"author{a}") for a in AUTHORS])
            s.add_all([Tag(id=t, label=f"tag{t}") for t in TAGS])
            s.commit()
            env.store.clear()
            self.articles: list[int] = []

        def read_all(self) -> None:
            for name, query in queries(env).items():
                for n in (*AUTHORS, *self.articles[-3:], 0):
                    env.store.get_or_set(f"{name}:{n}", lambda q=query, n=n: q(n))  # type: ignore[misc]
            s.rollback()

        def check(self) -> None:
            s.expire_all()
            for name, query in queries(env).items():
                for n in (*AUTHORS, *self.articles[-3:], 0):
                    cached = env.store.get_or_set(f"{name}:{n}", lambda q=query, n=n: q(n))  # type: ignore[misc]
                    s.rollback()
                    fresh = query(n)
                    s.rollback()
                    assert cached == fresh, (name, n, cached, fresh)

        @rule()
        def read(self) -> None:
            self.read_all()

        @rule(
            author=st.sampled_from(AUTHORS),
            score=st.integers(0, 5),
            tags=st.sets(st.sampled_from(TAGS)),
        )
        def orm_insert(self, author: int, score: int, tags: set[int]) -> None:
            article = Article(id=next(ids), author_id=author, title=f"t{author}", score=score)
            article.tags = [s.get(Tag, t) for t in sorted(tags)]
            s.add(article)
            self.articles.append(article.id)

        @rule(data=st.data(), author=st.sampled_from(AUTHORS))
        def orm_update(self, data: Any, author: int) -> None:
            if not self.articles:
                return
            article = s.get(Article, data.draw(st.sampled_from(self.articles)))
            if article is None:
                return
            article.author_id = author
            article.title = f"moved{author}"
            article.score += 1

        @rule(data=st.data())
        def orm_delete(self, data: Any) -> None:
            if not self.articles:
                return
            article = s.get(Article, data.draw(st.sampled_from(self.articles)))
            if article is not None:
                s.delete(article)

        @rule(author=st.sampled_from(AUTHORS))
        def bulk_orm(self, author: int) -> None:
            s.execute(
                sa.update(Article)
                .where(Article.author_id == author)
                .values(score=Article.score + 2)
            )

        @rule(data=st.data(), tag=st.sampled_from(TAGS), add=st.booleans())
        def core_link(self, data: Any, tag: int, add: bool) -> None:
            if not self.articles:
                return
            article = data.draw(st.sampled_from(self.articles))
            s.flush()  # Core statements do not autoflush the session's pending links
            conn = s.connection()
            if add:
                exists = conn.execute(
                    sa.select(article_tags).where(
                        article_tags.c.article_id == article, article_tags.c.tag_id == tag
                    )
                ).first()
                present = s.get(Article, article) is not None
                if exists is None and present:
                    conn.execute(article_tags.insert().values(article_id=article, tag_id=tag))
            else:
                conn.execute(article_tags.delete().where(article_tags.c.tag_id == tag))

        @rule(author=st.sampled_from(AUTHORS))
        def textual(self, author: int) -> None:
            s.execute(
                sa.text("UPDATE auto_authors SET name = name || 'x' WHERE id = :a"), {"a": author}
            )
            s.execute(
                sa.text("UPDATE auto_articles SET score = score + 1 WHERE author_id = :a"),
                {"a": author},
            )

        @rule()
        def commit(self) -> None:
            s.commit()
            self.check()

        def teardown(self) -> None:
            s.rollback()

    return AutoMachine


def test_cached_queries_equal_the_database_after_every_commit(env: Env) -> None:
    Base.metadata.create_all(env.db.engine)
    try:
        run_state_machine_as_test(
            make_machine(env),
            settings=settings(
                max_examples=int(os.environ.get("SM_EXAMPLES", "8")),
                stateful_step_count=15,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
            ),
        )
    finally:
        env.session.rollback()
        Base.metadata.drop_all(env.db.engine)
