"""The example app keeps its API contract: the OpenAPI document at ``/api/openapi.json``.

* The document names exactly the app's routes and methods (its URL map), every ``$ref``
  resolves, and the document is what the route serves.
* Schemathesis (in-process, on the WSGI app, bounded examples) sends generated requests, valid
  and invalid, to every operation, as a seeded demo user (and sometimes as the other one, whose
  role differs per room), and checks every answer: no 5xx, a documented status and content
  type, a body that matches its schema (so every error has the documented shape), and a 401
  when the identity is left out.
* Every undocumented method on every path is a 405 with ``Allow`` naming the documented ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from example_app import create_app
from example_app.cli import _seed
from example_app.extensions import db
from example_app.openapi import ALICE, BOB, DOCUMENT, FILE, FOLDER, ROOM

#: Methods the URL map adds to every rule by itself (HEAD for GET, OPTIONS everywhere).
IMPLICIT = {"HEAD", "OPTIONS"}

#: Schemathesis examples per operation: generated (valid and invalid, random ids), then valid
#: input on the demo rows as each demo user. About 15 s for the whole API here.
MAX_EXAMPLES = 20
SEEDED_EXAMPLES = 6


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def url_map_operations(app: Flask) -> set[tuple[str, str]]:
    ops = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":  # Flask's own static files route, not part of the API
            continue
        for method in set(rule.methods or ()) - IMPLICIT:
            ops.add((_openapi_path(rule.rule), method.lower()))
    return ops


def document_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item}


@pytest.fixture
def contract_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The example app on SQLite and the memory cache, with the demo data of ``seed``."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'contract.db'}",
            "REDIS_URL": None,
            "STORAGE_DIR": str(tmp_path / "storage"),
            "MAX_CONTENT_LENGTH": 64 * 1024,
        }
    )
    with app.app_context():
        db.create_all()
        _seed()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_the_document_names_every_route_and_nothing_else(contract_app: Flask) -> None:
    routes = url_map_operations(contract_app)
    documented = document_operations(DOCUMENT)
    assert routes - documented == set(), "routes missing from example_app/openapi.py"
    assert documented - routes == set(), "documented operations the app does not have"
    assert len(routes) >= 21


def test_url_map_comparison_sees_a_new_route(contract_app: Flask) -> None:
    # the comparison itself: an undocumented route shows up (path converters included)
    contract_app.add_url_rule("/api/extra/<int:n>", "extra", lambda n: "", methods=["PUT"])
    assert url_map_operations(contract_app) - document_operations(DOCUMENT) == {
        ("/api/extra/{n}", "put")
    }


def test_every_ref_resolves_and_the_route_serves_the_document(contract_app: Flask) -> None:
    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in set(refs(DOCUMENT)):
        node: Any = DOCUMENT
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
    resp = contract_app.test_client().get("/api/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_json()
    assert body == DOCUMENT and body["openapi"].startswith("3.1")


def test_an_undocumented_method_is_a_405_with_allow_in_the_error_shape(
    contract_app: Flask,
) -> None:
    client = contract_app.test_client()
    error = DOCUMENT["components"]["schemas"]["Error"]
    for path, item in DOCUMENT["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        documented = {m.upper() for m in item}
        for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - documented):
            resp = client.open(concrete, method=method, headers={"X-User-Id": ALICE})
            assert resp.status_code == 405, (method, path)
            implicit = {"OPTIONS"} | ({"HEAD"} if "GET" in documented else set())
            assert set(resp.headers["Allow"].split(", ")) == documented | implicit, (method, path)
            body = resp.get_json()
            assert set(body) == set(error["required"])
            assert body["error"]["code"] == "method_not_allowed"


#: Alice owns the demo room "acme" (whose ids are the document's examples) and edits
#: "falcon"; Bob is a viewer of acme and owns falcon: both reach successes, 403s and 409s.
CALLERS = [ALICE, BOB]
#: The seeded rows, for the cases that aim at existing objects instead of random ids.
SEEDED = {"room_id": ROOM, "folder_id": FOLDER, "file_id": FILE, "user_id": BOB}


def test_the_api_keeps_its_contract(contract_app: Flask) -> None:
    """Every operation, generated valid and invalid input, with bounded examples (about 20 s).

    The checks are Schemathesis' defaults (``not_a_server_error``, ``status_code_conformance``,
    ``content_type_conformance``, ``response_schema_conformance``, ``response_headers_conformance``,
    ``missing_required_header``, ``ignored_auth``, ...) but two that judge the app's input
    policy rather than its contract:

    * ``positive_data_acceptance``: a well-formed id in a body that names nothing usable
      (``userId``, ``parentId``, ``folderId``) is a documented 400 ``invalid_field``, which
      that check would count as valid input refused;
    * ``negative_data_rejection``: unknown query parameters and body fields are ignored, as
      Flask apps usually do, where that check wants them refused.

    Invalid input still has to get a documented status with the documented error body.
    """
    from schemathesis.specs.openapi.checks import (
        negative_data_rejection,
        positive_data_acceptance,
    )

    excluded = [positive_data_acceptance, negative_data_rejection]

    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", contract_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # every operation but the document's own route (which Schemathesis leaves out)
    assert len(operations) == len(document_operations(DOCUMENT)) - 1
    calls = 0

    def run(operation: Any, strategy: Any, callers: list[str], examples: int) -> None:
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,  # the same cases on every run: a failure is a contract bug
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        @given(case=strategy, caller=st.sampled_from(callers))
        def check(case: schemathesis.Case, caller: str) -> None:
            nonlocal calls
            with contract_app.app_context():
                _seed()  # a DELETE of a demo row must not starve the cases after it
            calls += 1
            if "X-User-Id" in (case.headers or {}):  # a negative case may leave it out: keep that
                case.headers["X-User-Id"] = caller
            case.call_and_validate(excluded_checks=excluded)

        try:
            check()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc

    for operation in operations:
        generated = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
        run(operation, generated, CALLERS, MAX_EXAMPLES)
        seeded = {p.name: SEEDED[p.name] for p in operation.path_parameters}
        if seeded:  # the same operation on the demo rows, as each demo user (owner, viewer)
            on_rows = operation.as_strategy(GenerationMode.POSITIVE, path_parameters=seeded)
            for caller in (ALICE, BOB):
                run(operation, on_rows, [caller], SEEDED_EXAMPLES)
    assert calls >= len(operations) * MAX_EXAMPLES
