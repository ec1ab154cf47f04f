"""The docs keep up with the code: every config key documented, every page in the nav."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_config_key_is_in_the_configuration_reference() -> None:
    package = ROOT / "flask_dataroom_cache"
    # the keys read (config.py) and Flask-Caching's, named with ours (configvalues.py)
    source = "".join((package / name).read_text() for name in ("config.py", "configvalues.py"))
    keys = set(re.findall(r'"((?:CACHE|REDIS)_[A-Z0-9_]+)"', source))
    assert len(keys) >= 15
    page = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(k for k in keys if f"`{k}`" not in page)
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_every_docs_page_is_in_the_mkdocs_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    missing = [p for p in pages if p not in nav]
    assert not missing, f"mkdocs.yml nav lacks {missing}"


def test_every_cli_command_is_documented() -> None:
    from flask_dataroom_cache.cli import group

    page = (ROOT / "docs" / "cli.md").read_text()
    for name in group.commands:
        assert f"## `{name}`" in page, name
