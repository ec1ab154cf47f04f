"""The packaging metadata keeps its promises (the built artifacts: `.ci/package-check`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def test_dev_dependency_group_mirrors_the_dev_extra() -> None:
    # `pip install -e '.[dev]'` (make install, .ci/run) and `pip install --group dev` / `uv sync`
    # must install the same tools.
    extra = PYPROJECT["project"]["optional-dependencies"]["dev"]
    group = PYPROJECT["dependency-groups"]["dev"]
    assert sorted(extra) == sorted(group)


def test_no_requirement_is_dead_on_every_supported_python() -> None:
    """A marker no supported Python satisfies (``types-redis; python_version<'3.0'``) never
    installs anything: it only looks like a dependency."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    supported = SpecifierSet(PYPROJECT["project"]["requires-python"])
    pythons = [f"3.{minor}" for minor in range(8, 20) if f"3.{minor}.0" in supported]
    assert pythons
    lists = [
        PYPROJECT["project"]["dependencies"],
        *PYPROJECT["project"]["optional-dependencies"].values(),
        *PYPROJECT["dependency-groups"].values(),
    ]
    dead = []
    for line in (r for requirements in lists for r in requirements if isinstance(r, str)):
        marker = Requirement(line).marker
        if marker is None or "python" not in str(marker):
            continue
        envs = [
            {**default_environment(), "python_version": v, "python_full_version": f"{v}.0"}
            for v in pythons
        ]
        if not any(marker.evaluate(env) for env in envs):  # type: ignore[arg-type]
            dead.append(line)
    assert dead == []


def test_the_wheel_ships_the_library_only() -> None:
    build = PYPROJECT["build-system"]
    assert build["build-backend"] == "hatchling.build"
    assert PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "flask_dataroom_cache"
    ]


def test_metadata() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert (ROOT / project["license-files"][0]).is_file()
    classifiers = set(project["classifiers"])
    for wanted in (
        "Framework :: Flask",
        "Typing :: Typed",
        "Programming Language :: Python :: 3.11",
    ):
        assert wanted in classifiers
    # PEP 639: the `license` expression replaces the License :: classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert project["requires-python"] == ">=3.11"
    assert (ROOT / "flask_dataroom_cache" / "py.typed").is_file()


def test_ci_runs_the_package_check() -> None:
    run = (ROOT / ".ci" / "run").read_text()
    steps = [line for line in run.splitlines() if line.startswith(("make ", "EXAMPLE_AUTO_TAGS"))]
    assert steps[0] == "make test" and steps[-2:] == ["make lint", "make package-check"]
    # issue 17's proof: the example app's tests again with automatic dependencies only
    assert any(s.startswith("EXAMPLE_AUTO_TAGS=1 ") and "tests/example" in s for s in steps)
    assert "package-check:" in (ROOT / "Makefile").read_text()
    assert (ROOT / ".ci" / "package-check").stat().st_mode & 0o111
