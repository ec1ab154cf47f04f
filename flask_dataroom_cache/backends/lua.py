"""The Lua scripts the Redis backend and the near cache run, shipped as ``.lua`` files.

Each package keeps its scripts in a ``scripts/`` folder beside its modules
(``redis/scripts/get.lua``, ``near/scripts/publish.lua``); each file opens with a comment
naming its ``KEYS``, its ``ARGV`` and what it returns. They are package data
(``[tool.setuptools.package-data]`` in ``pyproject.toml``), read once per process.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["load_script"]


@cache
def load_script(package: str, name: str) -> str:
    """The text of ``scripts/{name}.lua`` in ``package`` (e.g. ``__package__``)."""
    return (files(package) / "scripts" / f"{name}.lua").read_text(encoding="utf-8")
