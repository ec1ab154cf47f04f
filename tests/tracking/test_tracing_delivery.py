"""A commit's invalidations are delivered inside one ``dataroom_cache.invalidate`` span
(``tracing.py``) with the number of tags sent and where they came from; a rollback, and a
deferred call, have none."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Env
from .models import DataRoom

pytest.importorskip("opentelemetry.sdk")


def test_a_commit_delivery_has_one_span_with_its_tag_count(env: Env, span_exporter: Any) -> None:
    room = DataRoom(name="r")
    env.session.add(room)
    env.session.flush()
    env.session.rollback()
    assert span_exporter.get_finished_spans() == ()
    env.session.add(DataRoom(name="s"))
    env.session.flush()
    env.cache.invalidate_tags("custom:1")  # deferred to the commit: no span yet
    assert span_exporter.get_finished_spans() == ()
    env.backend.reset()
    env.session.commit()
    (span,) = span_exporter.get_finished_spans()
    (sent,) = env.backend.invalidated  # one delivery, inside the span
    assert span.name == "dataroom_cache.invalidate"
    assert span.attributes["dataroom_cache.tag_count"] == len(sent)
    assert "custom:1" in sent and len(sent) >= 2
    assert span.attributes["dataroom_cache.source"] == "commit"
    assert span.attributes["dataroom_cache.backend"] == env.store.backend.name
