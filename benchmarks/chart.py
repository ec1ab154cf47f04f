"""The ratio rows of a benchmark run as one SVG chart (``benchmarks/results/chart.svg``).

Each ratio row (``ratio`` with its ``target``) is a horizontal bar from 1x on a shared
logarithmic axis (ratios run from 0.05x to 300x), with its target as a vertical mark across it;
bars are grouped by benchmark group, green when the target is met, red when missed, grey for
``info`` rows (no target). Hand-written SVG: no plotting dependency.

``python -m benchmarks`` writes it after each run from the newest ``{group}.json`` of every
module (so a run of one module keeps the others' bars), with a copy in ``docs/img/`` for the
docs; ``python -m benchmarks.chart [JSON ...]`` redraws both from result files.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

RESULTS = Path(__file__).parent / "results"
#: The copy the docs show (mkdocs serves only files under docs/).
DOCS_COPY = Path(__file__).parent.parent / "docs" / "img" / "benchmarks.svg"

_TARGET = re.compile(r"^\s*(<=|>=|<|>|=)\s*([0-9][0-9,]*(?:\.[0-9]+)?)")

# layout (px)
_LABEL_W = 520
_PLOT_W = 420
_VALUE_W = 250
_ROW_H = 20
_BAR_H = 12
_GROUP_H = 26
_TOP = 56
_BOTTOM = 40
_WIDTH = _LABEL_W + _PLOT_W + _VALUE_W + 20


@dataclass(frozen=True)
class Bar:
    group: str
    name: str
    ratio: float
    target_text: str
    target: float | None  # the number of the target; None for "info"
    ok: bool | None


def parse_target(text: str) -> float | None:
    """``"<= 1.5x (flat in N)"`` -> 1.5; ``"info"`` or anything without a bound -> None."""
    match = _TARGET.match(str(text))
    return float(match.group(2).replace(",", "")) if match else None


def bars(rows: Iterable[dict[str, Any]]) -> list[Bar]:
    """The ratio rows, in the order given (grouped by first appearance of their group)."""
    out: list[Bar] = []
    for row in rows:
        if "ratio" not in row:
            continue
        target_text = str(row.get("target", ""))
        out.append(
            Bar(
                group=str(row.get("group", "")),
                name=str(row.get("name", "")),
                ratio=float(row["ratio"]),
                target_text=target_text,
                target=parse_target(target_text),
                ok=row.get("ok"),
            )
        )
    order = list(dict.fromkeys(b.group for b in out))
    return sorted(out, key=lambda b: order.index(b.group))


def _axis(values: Sequence[float]) -> tuple[float, float]:
    positive = [v for v in values if v > 0]
    low = min([*positive, 1.0])
    high = max([*positive, 1.0])
    # whole half-decades around the values: 0.316, 1, 3.16, 10, ...
    return 10 ** (math.floor(math.log10(low) * 2) / 2), 10 ** (math.ceil(math.log10(high) * 2) / 2)


def render(
    rows: Iterable[dict[str, Any]], title: str = "Benchmark ratios and their targets"
) -> str:
    """The SVG text for ``rows`` (the rows of ``latest.json`` or of one ``{group}.json``)."""
    items = bars(rows)
    lo, hi = _axis([b.ratio for b in items] + [b.target for b in items if b.target])
    lo = min(lo, 0.5)
    span = math.log10(hi) - math.log10(lo)

    def x(value: float) -> float:
        value = min(max(value, lo), hi)
        return _LABEL_W + (math.log10(value) - math.log10(lo)) / span * _PLOT_W

    groups = list(dict.fromkeys(b.group for b in items))
    height = _TOP + len(items) * _ROW_H + len(groups) * _GROUP_H + _BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif" font-size="12">',
        "<style>.ok{fill:#3a9d4a}.missed{fill:#d33c32}.info{fill:#9aa0a6}"
        ".target{stroke:#111;stroke-width:2}.grid{stroke:#ddd}.label{fill:#222}"
        ".group{font-weight:bold;fill:#111}</style>",
        f'<rect width="{_WIDTH}" height="{height}" fill="#fff"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
        '<text x="10" y="40" fill="#555">bar: the measured ratio, from 1x (log scale); black '
        "mark: its target; green met, red missed, grey information only</text>",
    ]
    plot_top, plot_bottom = _TOP, height - _BOTTOM
    for tick in (0.01, 0.1, 0.5, 1, 2, 5, 10, 100, 1000):
        if lo <= tick <= hi:
            tx = x(tick)
            out.append(
                f'<line class="grid" x1="{tx:.1f}" y1="{plot_top}" x2="{tx:.1f}" '
                f'y2="{plot_bottom}"/>'
            )
            out.append(
                f'<text x="{tx:.1f}" y="{plot_bottom + 16}" text-anchor="middle" '
                f'fill="#555">{tick:g}x</text>'
            )
    y = plot_top
    for group in groups:
        y += _GROUP_H
        out.append(f'<text class="group" x="10" y="{y - 8}">{escape(group)}</text>')
        for bar in (b for b in items if b.group == group):
            kind = "info" if bar.target is None else ("ok" if bar.ok else "missed")
            x0, x1 = sorted((x(1.0), x(bar.ratio)))  # from 1x: right above, left below
            mid = y + _ROW_H / 2
            tooltip = f"{bar.group}: {bar.name}: {bar.ratio:g}x, target {bar.target_text}"
            out.append(
                f'<text class="label" x="20" y="{mid + 4:.1f}">{escape(_short(bar.name))}</text>'
            )
            out.append(
                f'<rect class="bar {kind}" data-ratio="{bar.ratio}" x="{x0:.1f}" '
                f'y="{mid - _BAR_H / 2:.1f}" width="{max(x1 - x0, 1):.1f}" height="{_BAR_H}">'
                f"<title>{escape(tooltip)}</title></rect>"
            )
            if bar.target is not None:
                tx = x(bar.target)
                out.append(
                    f'<line class="target" data-target="{bar.target:g}" x1="{tx:.1f}" '
                    f'y1="{mid - _BAR_H / 2 - 3:.1f}" x2="{tx:.1f}" '
                    f'y2="{mid + _BAR_H / 2 + 3:.1f}"/>'
                )
            verdict = {"ok": "", "missed": " MISSED", "info": ""}[kind]
            out.append(
                f'<text x="{_LABEL_W + _PLOT_W + 10}" y="{mid + 4:.1f}" fill="#333">'
                f"{bar.ratio:.2f}x {escape(_short(bar.target_text, 30))}{verdict}</text>"
            )
            y += _ROW_H
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _short(name: str, limit: int = 80) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def write_chart(rows: Iterable[dict[str, Any]], path: Path, *copies: Path) -> Path:
    """Write the chart of ``rows`` to ``path`` and each of ``copies`` (directories created)."""
    text = render(rows)
    for target in (path, *copies):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return path


def rows_of(files: Iterable[Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for file in files:
        rows.extend(json.loads(file.read_text())["rows"])
    return rows


def group_files(modules: Iterable[str], results: Path = RESULTS) -> list[Path]:
    """The newest result file of each module that has one (``{group}.json``)."""
    files = [results / f"{m.removeprefix('bench_')}.json" for m in modules]
    return [f for f in files if f.exists()]


def main(argv: list[str]) -> int:
    from . import MODULES

    files = [Path(a) for a in argv] or group_files(MODULES)
    path = write_chart(rows_of(files), RESULTS / "chart.svg", DOCS_COPY)
    print(f"wrote {path} from {', '.join(f.name for f in files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
