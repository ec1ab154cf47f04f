"""Every route, every error, and freshness after every write, through HTTP (Flask test client).

Freshness pattern: read (so the entry is cached), write, read again: the second read must
show the write. The views never invalidate by hand, so these tests prove the models' tag
declarations cover what each view shows.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from flask_dataroom_cache.testing import assert_hit, assert_miss

from .conftest import UPLOAD_LIMIT, Api, error_code, make_user


def add_member(owner: Api, room: str, user: Api, role: str) -> None:
    owner.ok(
        owner.post(f"/api/datarooms/{room}/members", json={"userId": user.user_id, "role": role}),
        201,
    )


def folder(api: Api, room: str, name: str, parent: str | None = None) -> str:
    body = {"name": name} if parent is None else {"name": name, "parentId": parent}
    folder_id: str = api.ok(api.post(f"/api/datarooms/{room}/folders", json=body), 201)["id"]
    return folder_id


def upload(api: Api, room: str, name: str, data: bytes = b"x", folder_id: str | None = None) -> str:
    file_id: str = api.ok(api.upload(room, name, data, folder_id), 201)["id"]
    return file_id


# -- users, rooms, cache headers ------------------------------------------------------------
def test_users_and_rooms(client: FlaskClient, alice: Api, bob: Api) -> None:
    assert uuid.UUID(alice.user_id or "")
    assert alice.items("/api/datarooms") == []
    assert_hit(alice.get("/api/datarooms"))

    created = alice.ok(alice.post("/api/datarooms", json={"name": "  Deal  "}), 201)
    assert set(created) == {"id", "name", "createdAt", "updatedAt", "role"}
    assert created["name"] == "Deal" and created["role"] == "owner"
    room = created["id"]
    assert alice.names("/api/datarooms") == ["Deal"]  # fresh after create
    assert bob.items("/api/datarooms") == []  # not bob's

    got = alice.get(f"/api/datarooms/{room}")
    assert got.status_code == 200
    assert_miss(got)
    assert_hit(alice.get(f"/api/datarooms/{room}"))
    assert got.get_json() == created

    renamed = alice.ok(alice.patch(f"/api/datarooms/{room}", json={"name": "Deal 2"}))
    assert renamed["name"] == "Deal 2"
    assert alice.ok(alice.get(f"/api/datarooms/{room}"))["name"] == "Deal 2"
    assert alice.names("/api/datarooms") == ["Deal 2"]

    alice.ok(alice.post("/api/datarooms", json={"name": "Another"}), 201)
    assert alice.names("/api/datarooms") == ["Another", "Deal 2"]  # sorted by name

    # bad input on rooms
    for body in ({}, {"name": ""}, {"name": "x" * 256}, {"name": ["x"]}):
        assert error_code(alice.post("/api/datarooms", json=body), 400) == "invalid_field"
        assert error_code(alice.patch(f"/api/datarooms/{room}", json=body), 400)
    assert error_code(alice.post("/api/datarooms", data="{", content_type="application/json"), 400)
    assert alice.names("/api/datarooms") == ["Another", "Deal 2"]

    # conditional GET: the cached entry's ETag gives a 304
    etag = alice.get(f"/api/datarooms/{room}").headers["ETag"]
    again = alice.get(f"/api/datarooms/{room}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""

    assert alice.delete(f"/api/datarooms/{room}").status_code == 204
    assert error_code(alice.get(f"/api/datarooms/{room}"), 404) == "not_found"
    assert alice.names("/api/datarooms") == ["Another"]


def test_user_errors(client: FlaskClient) -> None:
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": 5}, {"name": "x" * 256}):
        assert error_code(client.post("/api/users", json=body), 400) == "invalid_field"
    assert client.post("/api/users", json={"name": "x" * 255}).status_code == 201
    bad_json = client.post("/api/users", data="{nope", content_type="application/json")
    assert error_code(bad_json, 400) == "bad_json"
    assert error_code(client.post("/api/users", json=["a"]), 400) == "bad_json"
    assert error_code(client.post("/api/users", data="name=x"), 400) == "bad_json"


def test_identity_errors(client: FlaskClient, alice: Api, room: str) -> None:
    f = folder(alice, room, "F")
    fi = upload(alice, room, "a.txt")
    paths = [
        ("get", "/api/datarooms"),
        ("post", "/api/datarooms"),
        ("get", f"/api/datarooms/{room}"),
        ("patch", f"/api/datarooms/{room}"),
        ("delete", f"/api/datarooms/{room}"),
        ("get", f"/api/datarooms/{room}/members"),
        ("post", f"/api/datarooms/{room}/members"),
        ("delete", f"/api/datarooms/{room}/members/{alice.user_id}"),
        ("get", f"/api/datarooms/{room}/folders"),
        ("post", f"/api/datarooms/{room}/folders"),
        ("get", f"/api/folders/{f}"),
        ("patch", f"/api/folders/{f}"),
        ("delete", f"/api/folders/{f}"),
        ("get", f"/api/datarooms/{room}/files"),
        ("post", f"/api/datarooms/{room}/files"),
        ("get", f"/api/files/{fi}"),
        ("patch", f"/api/files/{fi}"),
        ("delete", f"/api/files/{fi}"),
        ("get", f"/api/files/{fi}/content"),
    ]
    nobody = Api(client, None)
    unknown = Api(client, str(uuid.uuid4()))
    garbage = Api(client, "not-a-uuid'; drop table users")
    stranger = make_user(client, "Stranger")
    for method, path in paths:
        for who in (nobody, unknown, garbage):
            resp = getattr(who, method)(path, json={"name": "x"})
            assert error_code(resp, 401) == "unauthorized", (method, path)
            assert resp.headers.get("X-Cache") != "HIT"
        if path != "/api/datarooms":
            resp = getattr(stranger, method)(path, json={"name": "x"})
            assert error_code(resp, 404) == "not_found", (method, path)
    # nothing above changed anything
    assert alice.names(f"/api/datarooms/{room}/folders") == ["F"]
    assert alice.ok(alice.get(f"/api/files/{fi}"))["name"] == "a.txt"
    for path in ("/api/datarooms/nope", "/api/folders/nope", "/api/files/nope"):
        assert error_code(alice.get(path), 404) == "not_found"


def test_unknown_route_and_method_are_json(client: FlaskClient, alice: Api) -> None:
    assert error_code(alice.get("/api/nothing-here"), 404) == "not_found"
    assert error_code(client.put("/api/datarooms"), 405) == "method_not_allowed"


def test_cache_is_per_user(client: FlaskClient, alice: Api, bob: Api, room: str) -> None:
    add_member(alice, room, bob, "viewer")
    assert alice.ok(alice.get(f"/api/datarooms/{room}"))["role"] == "owner"
    assert bob.ok(bob.get(f"/api/datarooms/{room}"))["role"] == "viewer"
    assert alice.ok(alice.get(f"/api/datarooms/{room}"))["role"] == "owner"
    assert bob.get(f"/api/datarooms/{room}").headers["X-Cache"] == "HIT"
    assert bob.ok(bob.get(f"/api/datarooms/{room}"))["role"] == "viewer"


# -- members --------------------------------------------------------------------------------
def test_members(client: FlaskClient, alice: Api, bob: Api, room: str) -> None:
    carol = make_user(client, "Carol")
    members = f"/api/datarooms/{room}/members"
    assert [(m["name"], m["role"]) for m in alice.items(members)] == [("Alice", "owner")]
    assert error_code(bob.get(f"/api/datarooms/{room}"), 404) == "not_found"
    assert bob.items("/api/datarooms") == []

    created = alice.ok(alice.post(members, json={"userId": bob.user_id, "role": "viewer"}), 201)
    assert created["userId"] == bob.user_id and created["role"] == "viewer"
    assert [(m["name"], m["role"]) for m in alice.items(members)] == [
        ("Alice", "owner"),
        ("Bob", "viewer"),
    ]
    assert bob.names("/api/datarooms") == ["Deal"]  # bob's list was cached empty: fresh now
    assert bob.ok(bob.get(f"/api/datarooms/{room}"))["role"] == "viewer"
    assert [m["name"] for m in bob.items(members)] == ["Alice", "Bob"]

    # role change: shows at once in the room (role field) and the members list
    changed = alice.ok(alice.post(members, json={"userId": bob.user_id, "role": "editor"}), 200)
    assert changed["role"] == "editor"
    assert bob.ok(bob.get(f"/api/datarooms/{room}"))["role"] == "editor"
    assert [r["role"] for r in bob.items("/api/datarooms")] == ["editor"]

    # errors
    assert error_code(alice.post(members, json={"userId": bob.user_id, "role": "boss"}), 400)
    assert error_code(alice.post(members, json={"userId": bob.user_id}), 400)
    assert error_code(
        alice.post(members, json={"userId": str(uuid.uuid4()), "role": "viewer"}), 400
    )
    assert error_code(alice.post(members, json={"userId": 7, "role": "viewer"}), 400)
    assert error_code(alice.post(members, data="x", content_type="application/json"), 400)
    # an editor cannot manage members
    assert error_code(bob.post(members, json={"userId": carol.user_id, "role": "viewer"}), 403)
    assert error_code(bob.delete(f"{members}/{alice.user_id}"), 403) == "forbidden"
    # the last owner can neither leave nor be demoted
    assert error_code(alice.delete(f"{members}/{alice.user_id}"), 409) == "conflict"
    assert error_code(alice.post(members, json={"userId": alice.user_id, "role": "viewer"}), 409)
    assert error_code(alice.delete(f"{members}/{carol.user_id}"), 404) == "not_found"

    # revoke: bob's cached room, lists and folder entries die at once
    f = folder(alice, room, "Docs")
    fi = upload(alice, room, "a.txt", b"abc", f)
    for path in (
        f"/api/datarooms/{room}",
        f"/api/datarooms/{room}/folders",
        f"/api/datarooms/{room}/files?folderId={f}",
        f"/api/folders/{f}",
        f"/api/files/{fi}",
        members,
    ):
        assert bob.get(path).status_code == 200
        assert bob.get(path).headers["X-Cache"] == "HIT"
    assert alice.delete(f"{members}/{bob.user_id}").status_code == 204
    for path in (
        f"/api/datarooms/{room}",
        f"/api/datarooms/{room}/folders",
        f"/api/datarooms/{room}/files?folderId={f}",
        f"/api/folders/{f}",
        f"/api/files/{fi}",
        f"/api/files/{fi}/content",
        members,
    ):
        assert error_code(bob.get(path), 404) == "not_found", path
    assert bob.items("/api/datarooms") == []
    assert [m["name"] for m in alice.items(members)] == ["Alice"]

    # anyone may leave
    add_member(alice, room, carol, "viewer")
    assert carol.names("/api/datarooms") == ["Deal"]
    assert carol.delete(f"{members}/{carol.user_id}").status_code == 204
    assert carol.items("/api/datarooms") == []


def test_viewer_cannot_write(client: FlaskClient, alice: Api, bob: Api, room: str) -> None:
    add_member(alice, room, bob, "viewer")
    f = folder(alice, room, "F")
    fi = upload(alice, room, "a.txt", b"abc")
    writes = [
        bob.patch(f"/api/datarooms/{room}", json={"name": "x"}),
        bob.delete(f"/api/datarooms/{room}"),
        bob.post(f"/api/datarooms/{room}/members", json={"userId": bob.user_id, "role": "owner"}),
        bob.post(f"/api/datarooms/{room}/folders", json={"name": "x"}),
        bob.patch(f"/api/folders/{f}", json={"name": "x"}),
        bob.delete(f"/api/folders/{f}"),
        bob.upload(room, "b.txt", b"b"),
        bob.patch(f"/api/files/{fi}", json={"name": "x"}),
        bob.delete(f"/api/files/{fi}"),
    ]
    for resp in writes:
        assert error_code(resp, 403) == "forbidden"
    # reads work
    assert bob.names(f"/api/datarooms/{room}/folders") == ["F"]
    assert bob.names(f"/api/datarooms/{room}/files") == ["a.txt"]
    assert bob.get(f"/api/files/{fi}/content").data == b"abc"
    # editors write folders and files, but do not delete the room
    add_member(alice, room, make_user(client, "Ed"), "viewer")
    alice.ok(
        alice.post(f"/api/datarooms/{room}/members", json={"userId": bob.user_id, "role": "editor"})
    )
    assert bob.patch(f"/api/folders/{f}", json={"name": "G"}).status_code == 200
    assert bob.patch(f"/api/datarooms/{room}", json={"name": "Deal!"}).status_code == 200
    assert error_code(bob.delete(f"/api/datarooms/{room}"), 403) == "forbidden"


# -- folders --------------------------------------------------------------------------------
def test_folders(client: FlaskClient, alice: Api, room: str) -> None:
    root_list = f"/api/datarooms/{room}/folders"
    assert alice.items(root_list) == []
    legal = folder(alice, room, "Legal")
    fin = folder(alice, room, "Financials")
    assert alice.names(root_list) == ["Financials", "Legal"]
    contracts = folder(alice, room, "Contracts", legal)
    y2024 = folder(alice, room, "2024", contracts)
    legal_list = f"{root_list}?parentId={legal}"
    assert alice.names(legal_list) == ["Contracts"]
    assert alice.names(root_list) == ["Financials", "Legal"]

    got = alice.ok(alice.get(f"/api/folders/{contracts}"))
    assert set(got) == {"id", "name", "dataRoomId", "parentId", "createdAt", "updatedAt"}
    assert got["parentId"] == legal and got["dataRoomId"] == room
    assert alice.get(f"/api/folders/{contracts}").headers["X-Cache"] == "HIT"

    # same name twice in one folder: 409 (root and nested); same name elsewhere is fine
    assert error_code(alice.post(root_list, json={"name": "Legal"}), 409) == "conflict"
    assert error_code(alice.post(root_list, json={"name": "Contracts", "parentId": legal}), 409)
    folder(alice, room, "Contracts", fin)

    # rename: shows at once in the folder and in its parent's list
    alice.ok(alice.patch(f"/api/folders/{contracts}", json={"name": "Agreements"}))
    assert alice.ok(alice.get(f"/api/folders/{contracts}"))["name"] == "Agreements"
    assert alice.names(legal_list) == ["Agreements"]

    # move: leaves the old list, appears in the new one
    fin_list = f"{root_list}?parentId={fin}"
    assert alice.names(fin_list) == ["Contracts"]
    alice.ok(alice.patch(f"/api/folders/{contracts}", json={"parentId": fin}))
    assert alice.names(legal_list) == []
    assert alice.names(fin_list) == ["Agreements", "Contracts"]
    assert alice.ok(alice.get(f"/api/folders/{contracts}"))["parentId"] == fin
    # move to the root
    alice.ok(alice.patch(f"/api/folders/{contracts}", json={"parentId": None}))
    assert alice.names(fin_list) == ["Contracts"]
    assert alice.names(root_list) == ["Agreements", "Financials", "Legal"]
    # a move that collides with a name at the target: 409, nothing changes
    assert error_code(alice.patch(f"/api/folders/{fin}", json={"name": "Legal"}), 409)

    # into itself or a descendant: 409
    assert error_code(alice.patch(f"/api/folders/{contracts}", json={"parentId": contracts}), 409)
    assert error_code(alice.patch(f"/api/folders/{contracts}", json={"parentId": y2024}), 409)
    assert alice.ok(alice.get(f"/api/folders/{contracts}"))["parentId"] is None

    # bad input
    for body in ({}, {"name": ""}, {"name": "x" * 256}, {"name": None}, {"parentId": 3}):
        assert error_code(alice.patch(f"/api/folders/{legal}", json=body), 400) == "invalid_field"
    assert error_code(alice.patch(f"/api/folders/{legal}", json={"parentId": "nope"}), 400)
    assert error_code(alice.post(root_list, json={"name": "x", "parentId": str(uuid.uuid4())}), 400)
    assert error_code(alice.post(root_list, json={}), 400)
    assert error_code(alice.post(root_list, data="[", content_type="application/json"), 400)
    assert error_code(alice.get(f"{root_list}?parentId={uuid.uuid4()}"), 404)
    other = alice.ok(alice.post("/api/datarooms", json={"name": "Other"}), 201)["id"]
    elsewhere = folder(alice, other, "Elsewhere")
    assert error_code(alice.patch(f"/api/folders/{legal}", json={"parentId": elsewhere}), 400)
    assert error_code(alice.get(f"{root_list}?parentId={elsewhere}"), 404)


def test_delete_folder_removes_subtree(
    client: FlaskClient, example_app: Flask, alice: Api, room: str
) -> None:
    top = folder(alice, room, "Top")
    mid = folder(alice, room, "Mid", top)
    leaf = folder(alice, room, "Leaf", mid)
    files = [
        upload(alice, room, f"{n}.txt", n.encode(), parent)
        for n, parent in (("t", top), ("m", mid), ("l", leaf))
    ]
    keep = upload(alice, room, "keep.txt", b"keep")
    paths = [f"/api/folders/{x}" for x in (top, mid, leaf)] + [f"/api/files/{x}" for x in files]
    lists = [
        f"/api/datarooms/{room}/folders",
        f"/api/datarooms/{room}/folders?parentId={top}",
        f"/api/datarooms/{room}/folders?parentId={mid}",
        f"/api/datarooms/{room}/files?folderId={leaf}",
    ]
    for path in paths + lists:
        assert alice.get(path).status_code == 200
        assert alice.get(path).headers["X-Cache"] == "HIT"
    storage = Path(example_app.config["STORAGE_DIR"])
    assert len(os.listdir(storage)) == 4

    assert alice.delete(f"/api/folders/{top}").status_code == 204
    for path in paths + lists[1:]:
        assert error_code(alice.get(path), 404) == "not_found", path
    assert alice.items(lists[0]) == []
    assert alice.names(f"/api/datarooms/{room}/files") == ["keep.txt"]
    assert alice.get(f"/api/files/{keep}/content").data == b"keep"
    assert len(os.listdir(storage)) == 1
    assert error_code(alice.delete(f"/api/folders/{top}"), 404)


# -- files ----------------------------------------------------------------------------------
def test_files(client: FlaskClient, example_app: Flask, alice: Api, room: str) -> None:
    a = folder(alice, room, "A")
    b = folder(alice, room, "B")
    root_files = f"/api/datarooms/{room}/files"
    a_files, b_files = f"{root_files}?folderId={a}", f"{root_files}?folderId={b}"
    assert alice.items(root_files) == [] and alice.items(a_files) == []
    data = os.urandom(5000)
    created = alice.ok(alice.upload(room, "report.pdf", data, a, "application/pdf"), 201)
    assert set(created) == {
        "id",
        "name",
        "dataRoomId",
        "folderId",
        "size",
        "contentType",
        "sha256",
        "createdAt",
        "updatedAt",
    }
    assert created["size"] == 5000 and created["sha256"] == hashlib.sha256(data).hexdigest()
    assert created["contentType"] == "application/pdf" and created["folderId"] == a
    fid = created["id"]
    assert alice.names(a_files) == ["report.pdf"]
    assert alice.items(root_files) == []
    assert alice.ok(alice.get(f"/api/files/{fid}")) == created

    content = alice.get(f"/api/files/{fid}/content")
    assert content.status_code == 200 and content.data == data
    assert content.mimetype == "application/pdf"
    assert "X-Cache" not in content.headers  # streamed, never cached

    # guessed content type; stored under a generated name, never the client's path
    evil = alice.ok(alice.upload(room, "../../etc/passwd.txt", b"hi", None, ""), 201)
    assert evil["name"] == "passwd.txt" and evil["contentType"] == "text/plain"
    stored = os.listdir(example_app.config["STORAGE_DIR"])
    assert len(stored) == 2 and all(len(n) == 32 and "." not in n for n in stored)
    assert alice.names(root_files) == ["passwd.txt"]

    # rename shows at once
    alice.ok(alice.patch(f"/api/files/{fid}", json={"name": "report-v2.pdf"}))
    assert alice.ok(alice.get(f"/api/files/{fid}"))["name"] == "report-v2.pdf"
    assert alice.names(a_files) == ["report-v2.pdf"]
    # move between folders: leaves the old list, appears in the new
    assert alice.items(b_files) == []
    moved = alice.ok(alice.patch(f"/api/files/{fid}", json={"folderId": b}))
    assert moved["folderId"] == b
    assert alice.items(a_files) == []
    assert alice.names(b_files) == ["report-v2.pdf"]
    assert alice.ok(alice.get(f"/api/files/{fid}"))["folderId"] == b
    # move to the root, rename and move at once
    alice.ok(alice.patch(f"/api/files/{fid}", json={"folderId": None, "name": "r.pdf"}))
    assert alice.names(root_files) == ["passwd.txt", "r.pdf"]
    assert alice.items(b_files) == []

    # conflicts and bad input
    assert error_code(alice.upload(room, "r.pdf", b"again"), 409) == "conflict"
    assert error_code(alice.patch(f"/api/files/{fid}", json={"name": "passwd.txt"}), 409)
    upload(alice, room, "r.pdf", b"fine in A", a)
    assert error_code(alice.patch(f"/api/files/{fid}", json={"folderId": a}), 409)
    for body in ({}, {"name": ""}, {"name": "y" * 300}, {"folderId": 1}, {"folderId": "zz"}):
        assert error_code(alice.patch(f"/api/files/{fid}", json=body), 400)
    no_file = client.post(
        root_files,
        data={"name": "x"},
        headers={"X-User-Id": alice.user_id or ""},
        content_type="multipart/form-data",
    )
    assert error_code(no_file, 400) == "invalid_field"
    assert error_code(alice.upload(room, "x.txt", b"x", str(uuid.uuid4())), 400)
    assert error_code(alice.upload(room, "", b"x"), 400)
    assert error_code(alice.get(f"{root_files}?folderId=nope"), 404)
    too_big = alice.upload(room, "big.bin", b"\0" * (UPLOAD_LIMIT + 1))
    assert error_code(too_big, 413) == "payload_too_large"
    assert "big.bin" not in alice.names(root_files)
    assert len(os.listdir(example_app.config["STORAGE_DIR"])) == 3  # nothing left behind

    # delete: gone at once, bytes removed
    assert alice.delete(f"/api/files/{fid}").status_code == 204
    assert error_code(alice.get(f"/api/files/{fid}"), 404)
    assert error_code(alice.get(f"/api/files/{fid}/content"), 404)
    assert alice.names(root_files) == ["passwd.txt"]
    assert len(os.listdir(example_app.config["STORAGE_DIR"])) == 2


def test_delete_room_removes_everything(
    client: FlaskClient, example_app: Flask, alice: Api, bob: Api, room: str
) -> None:
    add_member(alice, room, bob, "editor")
    f = folder(alice, room, "F")
    sub = folder(alice, room, "S", f)
    fi = upload(alice, room, "a.txt", b"a", sub)
    paths = [
        f"/api/folders/{f}",
        f"/api/folders/{sub}",
        f"/api/files/{fi}",
        f"/api/datarooms/{room}/folders",
        f"/api/datarooms/{room}",
    ]
    for who in (alice, bob):
        for path in paths:
            assert who.get(path).status_code == 200
    assert bob.names("/api/datarooms") == ["Deal"]
    assert alice.delete(f"/api/datarooms/{room}").status_code == 204
    for who in (alice, bob):
        for path in paths:
            assert error_code(who.get(path), 404), path
        assert who.items("/api/datarooms") == []
    assert os.listdir(example_app.config["STORAGE_DIR"]) == []


def test_database_cascades_without_the_orm(example_app: Flask, alice: Api, room: str) -> None:
    """ON DELETE CASCADE holds at the database level too (a room deleted by plain SQL)."""
    from sqlalchemy import text

    from example_app.extensions import db

    f = folder(alice, room, "F")
    folder(alice, room, "S", f)
    upload(alice, room, "a.txt", b"a", f)
    with example_app.app_context():
        db.session.execute(text("DELETE FROM data_rooms WHERE id = :id"), {"id": room})
        db.session.commit()
        for table in ("folders", "files", "memberships"):
            count = db.session.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            assert count == 0, table


# -- the async route ------------------------------------------------------------------------
def test_async_tree(client: FlaskClient, alice: Api, bob: Api, room: str) -> None:
    """``GET .../tree`` is an async view reading through a tracked ``AsyncSession``
    (issue 14): cached per user like the sync GETs, fresh after every sync write."""
    tree = f"/api/datarooms/{room}/tree"
    first = alice.get(tree)
    assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
    assert first.get_json() == {"folders": [], "files": []}
    assert alice.get(tree).headers["X-Cache"] == "HIT"
    legal = folder(alice, room, "Legal")
    contracts = folder(alice, room, "Contracts", legal)
    readme = upload(alice, room, "README.txt", b"hello")
    nda = upload(alice, room, "nda.pdf", b"pdf", contracts)
    got = alice.get(tree)
    assert got.headers["X-Cache"] == "MISS"
    assert got.get_json() == {
        "folders": [
            {
                "id": legal,
                "name": "Legal",
                "folders": [
                    {
                        "id": contracts,
                        "name": "Contracts",
                        "folders": [],
                        "files": [{"id": nda, "name": "nda.pdf", "size": 3}],
                    }
                ],
                "files": [],
            }
        ],
        "files": [{"id": readme, "name": "README.txt", "size": 5}],
    }
    etag = got.headers["ETag"]
    assert alice.get(tree, headers={"If-None-Match": etag}).status_code == 304
    # a rename deep in the tree, a move, a delete: each shows on the next read
    alice.ok(alice.patch(f"/api/folders/{contracts}", json={"name": "Agreements"}))
    assert alice.ok(alice.get(tree))["folders"][0]["folders"][0]["name"] == "Agreements"
    alice.ok(alice.patch(f"/api/files/{nda}", json={"folderId": None}))
    assert [f["name"] for f in alice.ok(alice.get(tree))["files"]] == ["README.txt", "nda.pdf"]
    alice.ok(alice.delete(f"/api/folders/{legal}"), 204)
    assert alice.ok(alice.get(tree))["folders"] == []
    # per user: not a member is a 404 (never cached), a new member sees the tree
    assert error_code(bob.get(tree), 404) == "not_found"
    add_member(alice, room, bob, "viewer")
    assert [f["name"] for f in bob.ok(bob.get(tree))["files"]] == ["README.txt", "nda.pdf"]
    assert error_code(alice.get(f"/api/datarooms/{uuid.uuid4()}/tree"), 404)
    assert error_code(Api(client, None).get(tree), 401)
