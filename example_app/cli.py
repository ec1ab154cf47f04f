"""``flask --app example_app init-db`` and ``flask --app example_app seed``."""

from __future__ import annotations

import hashlib
import os
import uuid

import click
from flask import Flask, current_app

from .extensions import db
from .models import DataRoom, File, Folder, Membership, User

#: Demo ids are derived from names, so ``seed`` finds what an earlier run created.
_NS = uuid.UUID("6f1c2a4e-8d4b-4c55-9a39-3f7f0b1d2e10")


def demo_id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


USERS = {"alice": "Alice Example", "bob": "Bob Example"}
#: room key -> (name, {user: role}, folder paths, {path: [(file name, text)]})
ROOMS: dict[str, tuple[str, dict[str, str], list[str], dict[str, list[tuple[str, str]]]]] = {
    "acme": (
        "Acme acquisition",
        {"alice": "owner", "bob": "viewer"},
        ["Legal", "Legal/Contracts", "Legal/Contracts/2024", "Financials", "Financials/Q1"],
        {
            "": [("README.txt", "Welcome to the Acme data room.\n")],
            "Legal/Contracts": [("nda.txt", "Mutual NDA between Acme and Example Corp.\n")],
            "Legal/Contracts/2024": [("msa.txt", "Master services agreement, 2024.\n")],
            "Financials/Q1": [
                ("revenue.csv", "month,revenue\njan,100\nfeb,120\nmar,140\n"),
                ("notes.txt", "Q1 was good.\n"),
            ],
        },
    ),
    "falcon": (
        "Project Falcon",
        {"bob": "owner", "alice": "editor"},
        ["Design", "Design/Drafts"],
        {"Design": [("brief.txt", "Falcon design brief.\n")]},
    ),
}


def _seed() -> dict[str, str]:
    session = db.session
    for key, name in USERS.items():
        if session.get(User, demo_id("user", key)) is None:
            session.add(User(id=demo_id("user", key), name=name))
    storage = current_app.config["STORAGE_DIR"]
    os.makedirs(storage, exist_ok=True)
    for room_key, (room_name, members, folders, files) in ROOMS.items():
        room_id = demo_id("room", room_key)
        if session.get(DataRoom, room_id) is None:
            session.add(DataRoom(id=room_id, name=room_name))
        for user_key, role in members.items():
            mid = demo_id("membership", room_key, user_key)
            if session.get(Membership, mid) is None:
                session.add(
                    Membership(
                        id=mid, data_room_id=room_id, user_id=demo_id("user", user_key), role=role
                    )
                )
        for path in folders:
            fid = demo_id("folder", room_key, path)
            if session.get(Folder, fid) is None:
                parent, _, leaf = path.rpartition("/")
                session.add(
                    Folder(
                        id=fid,
                        data_room_id=room_id,
                        parent_id=demo_id("folder", room_key, parent) if parent else None,
                        name=leaf,
                    )
                )
            session.flush()  # parents before children (self-referential FK)
        for path, entries in files.items():
            for file_name, text in entries:
                file_id = demo_id("file", room_key, path, file_name)
                if session.get(File, file_id) is not None:
                    continue
                data = text.encode()
                storage_name = uuid.uuid4().hex
                with open(os.path.join(storage, storage_name), "wb") as out:
                    out.write(data)
                session.add(
                    File(
                        id=file_id,
                        data_room_id=room_id,
                        folder_id=demo_id("folder", room_key, path) if path else None,
                        name=file_name,
                        size=len(data),
                        content_type="text/csv" if file_name.endswith(".csv") else "text/plain",
                        sha256=hashlib.sha256(data).hexdigest(),
                        storage_name=storage_name,
                    )
                )
    session.commit()
    return {key: demo_id("user", key) for key in USERS}


def register(app: Flask) -> None:
    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the tables (those that exist are left alone)."""
        db.create_all()
        click.echo(f"database ready: {db.engine.url.render_as_string(hide_password=True)}")

    @app.cli.command("seed")
    @click.option(
        "--base-url",
        default="http://127.0.0.1:5000",
        show_default=True,
        help="Where the app will listen (only used in the printed curl line).",
    )
    def seed(base_url: str) -> None:
        """Add the demo users, rooms, folders and files (idempotent)."""
        db.create_all()
        users = _seed()
        click.echo("demo users:")
        for key, uid in users.items():
            click.echo(f"  {USERS[key]:<14} X-User-Id: {uid}")
        click.echo("try:")
        click.echo(
            f"  curl -s -H 'X-User-Id: {users['alice']}' {base_url.rstrip('/')}/api/datarooms"
        )
