"""The package's layout rules that a grep can check.

* Only ``tracking/sqlexpr.py`` reads SQLAlchemy's (and Flask-SQLAlchemy's) private
  attributes: an upgrade that moves one breaks one small function, not the tracker.
* Every module of ``tracking/`` opens with a docstring saying what it owns.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "flask_dataroom_cache"
TRACKING = PACKAGE / "tracking"

#: Private attributes of SQLAlchemy / Flask-SQLAlchemy objects the tracker needs. (``Row.
#: _mapping`` is public API despite its underscore.)
PRIVATE_NAMES = (
    "_values",
    "_ordered_values",
    "_multi_values",
    "_select_names",
    "_post_values_clause",
    "_propagate_attrs",
    "_compiled_cache",
    "_new",
    "_deleted",
    "_flushing",
    "_transaction",
    "_nested_transaction",
    "_modified",
    "_is_autocommit_isolation",
    "_proxied",
    "_app_engines",
    "_db",
    "_connection_record",
    "_dbapi_connection",
    "_prefixes",
)
#: ``obj._name`` or ``getattr(obj, "_name")``.
ACCESS = re.compile(r"""(?:\.|["'])(""" + "|".join(PRIVATE_NAMES) + r")\b")


def test_only_sqlexpr_reads_sqlalchemy_private_attributes() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == TRACKING / "sqlexpr.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for match in ACCESS.finditer(code):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {match.group(1)}")
    assert not offenders, "SQLAlchemy private attributes outside tracking/sqlexpr.py:\n" + (
        "\n".join(offenders)
    )


def test_the_rule_catches_an_access() -> None:
    assert ACCESS.search("modified = session.identity_map._modified")
    assert ACCESS.search('getattr(stmt, "_values", None)')
    assert not ACCESS.search("row._mapping[column]")
    assert not ACCESS.search("self._new_rows = []")


def test_every_tracking_module_says_what_it_owns() -> None:
    for path in sorted(TRACKING.glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc) > 80, f"{path.name} has no module docstring"
