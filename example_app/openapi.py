"""The HTTP API's contract: an OpenAPI 3.1 document of every route, at ``GET /api/openapi.json``.

Built once from the same constants the views check (``NAME_MAX``, ``ROLES``, the error codes of
``errors.py``) and served as is: it names no user and nothing in it changes, so it is not
cached per user (the response is identical for everyone). The examples are the ids of the demo
data that ``flask --app example_app seed`` creates, so "try it out" tools reach real rows.

Kept true by ``tests/example/test_contract.py``: its paths and methods equal the app's URL map,
and Schemathesis sends generated requests to every operation and checks every answer against
the document (status, content type, body schema, the error shape).
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from .api import bp
from .cli import demo_id
from .errors import CODES
from .metrics import AVAILABLE
from .models import NAME_MAX, ROLES

#: Every ``error.code`` the API answers (``errors.py``; ``error`` for a status without one).
ERROR_CODES = sorted({*CODES.values(), "bad_json", "invalid_field", "error"})

ALICE = demo_id("user", "alice")
BOB = demo_id("user", "bob")
ROOM = demo_id("room", "acme")
FOLDER = demo_id("folder", "acme", "Legal")
FILE = demo_id("file", "acme", "", "README.txt")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ref("Error"))}


ERRORS: dict[str, dict[str, Any]] = {
    "400": _error("bad input: `bad_json` (not a JSON object) or `invalid_field`"),
    "401": _error("`X-User-Id` missing, malformed or not a user"),
    "403": _error("the caller's role cannot do this"),
    "404": _error("no such thing, or not in a data room of the caller's"),
    "409": _error(
        "a name already used there, a folder moved into its own subtree, or the last owner"
    ),
    "413": _error("the request body is larger than `MAX_CONTENT_LENGTH`"),
}


def _errors(*statuses: str) -> dict[str, dict[str, Any]]:
    return {status: ERRORS[status] for status in statuses}


def _ok(status: str, description: str, schema: str | None) -> dict[str, Any]:
    if schema is None:
        return {status: {"description": description}}
    headers = {"X-Cache": {"$ref": "#/components/headers/XCache"}} if status == "200" else {}
    out: dict[str, Any] = {"description": description, "content": _json(_ref(schema))}
    if headers:
        out["headers"] = headers
    return {status: out}


def _path_param(name: str, what: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"the {what}'s id (a UUID; anything else is a 404)",
        "schema": {"type": "string"},
        "example": example,
    }


def _body(schema: str, example: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": _ref(schema), "example": example}},
    }


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    if public:
        op["security"] = []
    return op


ROOM_ID = _path_param("room_id", "data room", ROOM)
FOLDER_ID = _path_param("folder_id", "folder", FOLDER)
FILE_ID = _path_param("file_id", "file", FILE)
USER_ID = _path_param("user_id", "member's user", BOB)

# A name as sent: the API strips it, and then it must be 1-255 characters without control
# characters (the pattern: at least one character that is neither space nor control).
NAME_IN = {
    "type": "string",
    "minLength": 1,
    "maxLength": NAME_MAX,
    "pattern": r"^[^\x00-\x1f]*[^\s\x00-\x1f][^\x00-\x1f]*$",
}
NULLABLE_ID = {
    "type": ["string", "null"],
    "description": "a folder of the same data room; null: the root",
}
TIMESTAMP = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC, with Z"}
ID = {"type": "string", "format": "uuid"}
NAME_OUT = {"type": "string", "minLength": 1, "maxLength": NAME_MAX}
ROLE = {"type": "string", "enum": list(ROLES)}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _request(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


def _items(schema: str) -> dict[str, Any]:
    return _object({"items": {"type": "array", "items": _ref(schema)}})


SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _object(
        {
            "error": _object(
                {"code": {"type": "string", "enum": ERROR_CODES}, "message": {"type": "string"}}
            )
        }
    ),
    "User": _object({"id": ID, "name": NAME_OUT}),
    "DataRoom": _object(
        {
            "id": ID,
            "name": NAME_OUT,
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
            "role": {**ROLE, "description": "the caller's role in this data room"},
        }
    ),
    "Member": _object(
        {
            "userId": ID,
            "name": NAME_OUT,
            "role": ROLE,
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
        }
    ),
    "Folder": _object(
        {
            "id": ID,
            "name": NAME_OUT,
            "dataRoomId": ID,
            "parentId": {"type": ["string", "null"], "format": "uuid"},
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
        }
    ),
    "File": _object(
        {
            "id": ID,
            "name": NAME_OUT,
            "dataRoomId": ID,
            "folderId": {"type": ["string", "null"], "format": "uuid"},
            "size": {"type": "integer", "minimum": 0},
            "contentType": {"type": "string"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
        }
    ),
    "TreeFile": _object({"id": ID, "name": NAME_OUT, "size": {"type": "integer", "minimum": 0}}),
    "TreeFolder": _object(
        {
            "id": ID,
            "name": NAME_OUT,
            "folders": {"type": "array", "items": _ref("TreeFolder")},
            "files": {"type": "array", "items": _ref("TreeFile")},
        }
    ),
    "Tree": _object(
        {
            "folders": {"type": "array", "items": _ref("TreeFolder")},
            "files": {"type": "array", "items": _ref("TreeFile")},
        }
    ),
    "DataRoomList": _items("DataRoom"),
    "MemberList": _items("Member"),
    "FolderList": _items("Folder"),
    "FileList": _items("File"),
    # Request bodies: unknown fields are ignored (no additionalProperties: false)
    "NameBody": _request({"name": NAME_IN}, ["name"]),
    "MemberBody": _request({"userId": {"type": "string"}, "role": ROLE}, ["userId", "role"]),
    "NewFolderBody": _request({"name": NAME_IN, "parentId": NULLABLE_ID}, ["name"]),
    "FolderChange": {
        **_request({"name": NAME_IN, "parentId": NULLABLE_ID}, []),
        "anyOf": [{"required": ["name"]}, {"required": ["parentId"]}],
    },
    "FileChange": {
        **_request({"name": NAME_IN, "folderId": NULLABLE_ID}, []),
        "anyOf": [{"required": ["name"]}, {"required": ["folderId"]}],
    },
    "Upload": {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "the bytes"},
            "name": {**NAME_IN, "description": "display name (default: the upload's file name)"},
            "folderId": {"type": "string", "description": "a folder of the data room"},
        },
        "required": ["file"],
    },
}

_LIST_QUERY = {
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
}

PATHS: dict[str, dict[str, Any]] = {
    "/api/openapi.json": {
        "get": _op(
            "This document",
            {"200": {"description": "the OpenAPI document", "content": _json({"type": "object"})}},
            public=True,
        )
    },
    "/api/users": {
        "post": _op(
            "Create a user (no identity needed)",
            {**_ok("201", "the new user", "User"), **_errors("400", "413")},
            body=_body("NameBody", {"name": "Carol Example"}),
            public=True,
        )
    },
    "/api/datarooms": {
        "get": _op(
            "The data rooms the caller belongs to",
            {**_ok("200", "sorted by name, then id", "DataRoomList"), **_errors("401")},
        ),
        "post": _op(
            "Create a data room; the caller becomes its owner",
            {**_ok("201", "the new data room", "DataRoom"), **_errors("400", "401", "413")},
            body=_body("NameBody", {"name": "Board minutes"}),
        ),
    },
    "/api/datarooms/{room_id}": {
        "get": _op(
            "A data room",
            {**_ok("200", "the data room", "DataRoom"), **_errors("401", "404")},
            params=[ROOM_ID],
        ),
        "patch": _op(
            "Rename a data room (owner, editor)",
            {
                **_ok("200", "the data room", "DataRoom"),
                **_errors("400", "401", "403", "404", "413"),
            },
            params=[ROOM_ID],
            body=_body("NameBody", {"name": "Acme acquisition (closed)"}),
        ),
        "delete": _op(
            "Delete a data room with its folders, files and memberships (owner)",
            {**_ok("204", "deleted", None), **_errors("401", "403", "404")},
            params=[ROOM_ID],
        ),
    },
    "/api/datarooms/{room_id}/overview": {
        "get": _op(
            "A data room's overview as an HTML page (name, role, members, root folders and "
            "files): the API's one HTML answer, where the Flask-DebugToolbar shows itself",
            {
                "200": {
                    "description": "the page",
                    "headers": {"X-Cache": {"$ref": "#/components/headers/XCache"}},
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
                **_errors("401", "404"),
            },
            params=[ROOM_ID],
        ),
    },
    "/api/datarooms/{room_id}/members": {
        "get": _op(
            "The members of a data room",
            {**_ok("200", "sorted by name, then user id", "MemberList"), **_errors("401", "404")},
            params=[ROOM_ID],
        ),
        "post": _op(
            "Add a member, or change a member's role (owner)",
            {
                **_ok("200", "an existing member's role changed", "Member"),
                **_ok("201", "the new member", "Member"),
                **_errors("400", "401", "403", "404", "409", "413"),
            },
            params=[ROOM_ID],
            body=_body("MemberBody", {"userId": BOB, "role": "editor"}),
        ),
    },
    "/api/datarooms/{room_id}/members/{user_id}": {
        "delete": _op(
            "Remove a member (owner; anyone may remove themselves)",
            {**_ok("204", "removed", None), **_errors("401", "403", "404", "409")},
            params=[ROOM_ID, USER_ID],
        )
    },
    "/api/datarooms/{room_id}/tree": {
        "get": _op(
            "The data room's whole folder tree (an async view, read through AsyncSession)",
            {
                **_ok("200", "root folders and files, each level sorted by name, then id", "Tree"),
                **_errors("401", "404"),
            },
            params=[ROOM_ID],
        ),
    },
    "/api/datarooms/{room_id}/folders": {
        "get": _op(
            "The folders directly in a folder (the root without parentId)",
            {**_ok("200", "sorted by name, then id", "FolderList"), **_errors("401", "404")},
            params=[
                ROOM_ID,
                {**_LIST_QUERY, "name": "parentId", "description": "a folder of this data room"},
            ],
        ),
        "post": _op(
            "Create a folder (owner, editor)",
            {
                **_ok("201", "the new folder", "Folder"),
                **_errors("400", "401", "403", "404", "409", "413"),
            },
            params=[ROOM_ID],
            body=_body("NewFolderBody", {"name": "Tax", "parentId": FOLDER}),
        ),
    },
    "/api/folders/{folder_id}": {
        "get": _op(
            "A folder",
            {**_ok("200", "the folder", "Folder"), **_errors("401", "404")},
            params=[FOLDER_ID],
        ),
        "patch": _op(
            "Rename and/or move a folder (owner, editor)",
            {
                **_ok("200", "the folder", "Folder"),
                **_errors("400", "401", "403", "404", "409", "413"),
            },
            params=[FOLDER_ID],
            body=_body("FolderChange", {"name": "Legal (archived)", "parentId": None}),
        ),
        "delete": _op(
            "Delete a folder with everything below it (owner, editor)",
            {**_ok("204", "deleted", None), **_errors("401", "403", "404")},
            params=[FOLDER_ID],
        ),
    },
    "/api/datarooms/{room_id}/files": {
        "get": _op(
            "The files directly in a folder (the root without folderId)",
            {**_ok("200", "sorted by name, then id", "FileList"), **_errors("401", "404")},
            params=[
                ROOM_ID,
                {**_LIST_QUERY, "name": "folderId", "description": "a folder of this data room"},
            ],
        ),
        "post": _op(
            "Upload a file (owner, editor)",
            {
                **_ok("201", "the new file", "File"),
                **_errors("400", "401", "403", "404", "409", "413"),
            },
            params=[ROOM_ID],
            body={
                "required": True,
                "content": {"multipart/form-data": {"schema": _ref("Upload")}},
            },
        ),
    },
    "/api/files/{file_id}": {
        "get": _op(
            "A file's metadata",
            {**_ok("200", "the file", "File"), **_errors("401", "404")},
            params=[FILE_ID],
        ),
        "patch": _op(
            "Rename and/or move a file (owner, editor)",
            {
                **_ok("200", "the file", "File"),
                **_errors("400", "401", "403", "404", "409", "413"),
            },
            params=[FILE_ID],
            body=_body("FileChange", {"name": "LICENSE.txt", "folderId": None}),
        ),
        "delete": _op(
            "Delete a file and its bytes (owner, editor)",
            {**_ok("204", "deleted", None), **_errors("401", "403", "404")},
            params=[FILE_ID],
        ),
    },
    "/api/files/{file_id}/content": {
        "get": _op(
            "The file's bytes, streamed (not cached: the access check runs every time)",
            {
                "200": {
                    "description": "the bytes, with the file's content type and ETag: its sha256",
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "206": {
                    "description": "the requested byte range (Range)",
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "304": {"description": "not modified (If-None-Match / If-Modified-Since)"},
                **_errors("401", "404"),
            },
            params=[FILE_ID],
        ),
    },
}

if AVAILABLE:  # prometheus_client installed: the route exists (example_app/metrics.py)
    PATHS["/metrics"] = {
        "get": _op(
            "The cache's counters, Prometheus text format (summed over the workers when "
            "PROMETHEUS_MULTIPROC_DIR is set)",
            {
                "200": {
                    "description": "the Prometheus exposition",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
            public=True,
        )
    }

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Example Data Room API",
        "version": "1.0.0",
        "description": (
            "The example app of flask-dataroom-cache (docs/example-app.md). JSON in and out, "
            "UUID string ids, camelCase fields. Every error is "
            '`{"error": {"code": "...", "message": "..."}}`; an unsupported method is a 405 '
            "with an `Allow` header, in the same shape."
        ),
    },
    "servers": [{"url": "/"}],
    "security": [{"userId": []}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "userId": {
                "type": "apiKey",
                "in": "header",
                "name": "X-User-Id",
                "description": (
                    "the caller's user id (a stand-in for real authentication); demo users: "
                    f"alice {ALICE}, bob {BOB}"
                ),
            }
        },
        "headers": {
            "XCache": {
                "description": "what the cache did: HIT, MISS, or BYPASS (not cacheable here)",
                "schema": {"type": "string", "enum": ["HIT", "MISS", "BYPASS"]},
            }
        },
    },
}


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(DOCUMENT)
