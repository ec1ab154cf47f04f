"""``python -m benchmarks [module ...]``: run the benchmarks, print a table, write JSON and
the chart of the ratios (``results/chart.svg``, :mod:`benchmarks.chart`)."""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from . import MODULES, BenchEnv
from .chart import DOCS_COPY, group_files, rows_of, write_chart

RESULTS = Path(__file__).parent / "results"


def _machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'group':<14} {'name':<58} {'median':>11} {'min':>11} {'max':>11}  note"]
    for r in rows:
        if "ratio" in r:
            verdict = "ok" if r.get("ok") else "MISSED"
            lines.append(
                f"{r['group']:<14} {r['name']:<58} {r['ratio']:>10.3f}x {'':>11} {'':>11}  "
                f"target {r.get('target', '')} {verdict}"
            )
        elif "median_us" in r:
            lines.append(
                f"{r['group']:<14} {r['name']:<58} {r['median_us']:>9.1f}us "
                f"{r['min_us']:>9.1f}us {r['max_us']:>9.1f}us  {r.get('note', '')}"
            )
        elif "rps" in r:
            lines.append(
                f"{r['group']:<14} {r['name']:<58} {r['rps']:>8.0f}rps "
                f"{r.get('min_rps', 0):>8.0f}rps {r.get('max_rps', 0):>8.0f}rps  "
                f"{r.get('note', '')}"
            )
        else:
            extra = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("group", "name"))
            lines.append(f"{r['group']:<14} {r['name']:<58} {extra}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    env = BenchEnv()
    wanted = argv or MODULES
    all_rows: list[dict[str, Any]] = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        module = importlib.import_module(f"benchmarks.{name}")
        rows = module.run(env)
        group = name.removeprefix("bench_")
        (RESULTS / f"{group}.json").write_text(
            json.dumps({"machine": _machine(), "rows": rows}, indent=2) + "\n"
        )
        all_rows.extend(rows)
    out = {"machine": _machine(), "rows": all_rows}
    (RESULTS / "latest.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print()
    print(_table(all_rows))
    # the chart of every module's newest results (this run's, and earlier runs' of the others)
    chart = write_chart(rows_of(group_files(MODULES, RESULTS)), RESULTS / "chart.svg", DOCS_COPY)
    print(f"\nchart: {chart}")
    missed = [r for r in all_rows if r.get("ok") is False]
    if missed:
        print(f"\n{len(missed)} target(s) missed: " + ", ".join(r["name"] for r in missed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
