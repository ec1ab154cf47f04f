"""Bad input never causes a 500: random JSON bodies, query strings and ids on every write."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Api, make_user

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
fields = st.sampled_from(["name", "parentId", "folderId", "userId", "role"])
bodies = st.one_of(
    json_values,
    st.dictionaries(fields, json_values, max_size=4),
)
printable = st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#")
ids = st.one_of(st.uuids().map(str), st.text(printable, min_size=1, max_size=40))
ALLOWED = {200, 201, 204, 400, 403, 404, 405, 409}


@pytest.mark.parametrize("cache_kind", ["memory"], indirect=True)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_random_input_never_500(example_app: Flask) -> None:
    client = example_app.test_client()
    alice = make_user(client, "Alice")
    room = alice.ok(alice.post("/api/datarooms", json={"name": "R"}), 201)["id"]
    folder = alice.ok(alice.post(f"/api/datarooms/{room}/folders", json={"name": "F"}), 201)["id"]
    file_id = alice.ok(alice.upload(room, "a.txt", b"a", folder), 201)["id"]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, other=ids, which=st.integers(0, 7))
    def check(body: Any, other: str, which: int) -> None:
        api: Api = alice
        calls = [
            lambda: api.post(f"/api/datarooms/{room}/folders", json=body),
            lambda: api.patch(f"/api/folders/{folder}", json=body),
            lambda: api.patch(f"/api/files/{file_id}", json=body),
            lambda: api.post(f"/api/datarooms/{room}/members", json=body),
            lambda: api.patch(f"/api/datarooms/{room}", json=body),
            lambda: api.get(f"/api/datarooms/{room}/folders", query_string={"parentId": other}),
            lambda: api.get(f"/api/files/{other}"),
            lambda: client.get("/api/datarooms", headers={"X-User-Id": other}),
        ]
        resp = calls[which]()
        assert resp.status_code in ALLOWED | {401}, (resp.status_code, resp.get_data(as_text=True))
        if resp.status_code >= 400:
            assert set(resp.get_json()["error"]) == {"code", "message"}

    check()
