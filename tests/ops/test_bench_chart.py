"""The benchmark chart (benchmarks/chart.py): one bar per ratio row against its target."""

from __future__ import annotations

import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmarks.chart import DOCS_COPY, RESULTS, bars, parse_target, render, write_chart

SVG = "{http://www.w3.org/2000/svg}"

ROWS = [
    {"group": "core", "name": "hit / raw GET", "ratio": 1.2, "target": "<= 1.5x", "ok": True},
    {"group": "core", "name": "hit", "median_us": 80.0, "min_us": 70.0, "max_us": 90.0},
    {"group": "scale", "name": "L1 <speed-up> & more", "ratio": 3.0, "target": ">= 5", "ok": False},
    {"group": "core", "name": "del / ours", "ratio": 12.0, "target": "info", "ok": True},
]


def test_parse_target() -> None:
    assert parse_target("<= 1.5x (flat in N)") == 1.5
    assert parse_target(">= 1,000") == 1000
    assert parse_target("< 1.05") == 1.05
    assert parse_target("info") is None
    assert parse_target("") is None


def test_one_bar_per_ratio_row_grouped_with_its_target_mark(tmp_path: Path) -> None:
    path = write_chart(ROWS, tmp_path / "out" / "chart.svg", tmp_path / "copy.svg")
    assert (tmp_path / "copy.svg").read_text() == path.read_text()
    root = ET.parse(path).getroot()  # well-formed XML (names are escaped)
    assert root.tag == f"{SVG}svg"
    rects = [r for r in root.iter(f"{SVG}rect") if "bar" in r.get("class", "")]
    assert [(r.get("class"), float(r.get("data-ratio", 0))) for r in rects] == [
        ("bar ok", 1.2),  # core first (order of first appearance), the timing row left out
        ("bar info", 12.0),
        ("bar missed", 3.0),
    ]
    marks = [ln for ln in root.iter(f"{SVG}line") if ln.get("class") == "target"]
    assert [float(m.get("data-target", 0)) for m in marks] == [1.5, 5.0]  # none for "info"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "core" in texts and "scale" in texts
    assert "L1 <speed-up> & more" in texts
    # a log axis: the bar of 3.0 ends left of its target 5 and right of the 1.5 mark
    missed = rects[2]
    end = float(missed.get("x", 0)) + float(missed.get("width", 0))
    assert float(marks[0].get("x1", 0)) < end < float(marks[1].get("x1", 0))


def test_no_ratio_rows_still_renders() -> None:
    assert bars([ROWS[1]]) == []
    ET.fromstring(render([ROWS[1]]))


def test_the_docs_show_the_committed_chart() -> None:
    # `make bench` writes both; the docs page embeds its copy
    assert DOCS_COPY.read_bytes() == (RESULTS / "chart.svg").read_bytes()
    page = (DOCS_COPY.parents[1] / "benchmarks.md").read_text()
    assert "](img/benchmarks.svg)" in page


def test_a_benchmark_run_writes_the_chart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import benchmarks.__main__ as runner

    fake = types.ModuleType("benchmarks.bench_fake")
    fake.run = lambda env: ROWS  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake", fake)
    monkeypatch.setattr(runner, "MODULES", ["bench_fake"])
    monkeypatch.setattr(runner, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(runner, "DOCS_COPY", tmp_path / "docs" / "img" / "benchmarks.svg")
    assert runner.main(["bench_fake"]) == 0
    chart = tmp_path / "results" / "chart.svg"
    assert chart.read_text() == render(ROWS)
    assert (tmp_path / "docs" / "img" / "benchmarks.svg").read_text() == chart.read_text()
    assert f"chart: {chart}" in capsys.readouterr().out
