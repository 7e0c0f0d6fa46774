"""The one table the benchmark prints, and its JSON twin."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

Row = tuple[str, str, Any]  # (part, measure, value)


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(numerator: float | None, denominator: float | None) -> float:
    if not numerator or not denominator:
        return float("nan")
    return numerator / denominator


def table(rows: list[Row], notes: list[str]) -> str:
    part_width = max((len(part) for part, _, _ in rows), default=4)
    measure_width = max((len(measure) for _, measure, _ in rows), default=7)
    value_width = max((len(fmt(value)) for _, _, value in rows), default=5)
    lines = [f"{'part':<{part_width}}  {'measure':<{measure_width}}  {'value':>{value_width}}"]
    lines.append("-" * len(lines[0]))
    previous = None
    for part, measure, value in rows:
        shown = part if part != previous else ""
        previous = part
        lines.append(f"{shown:<{part_width}}  {measure:<{measure_width}}  {fmt(value):>{value_width}}")
    lines += ["", *(f"note: {note}" for note in notes)]
    return "\n".join(lines)


def write_json(
    path: Path, rows: list[Row], results: dict[str, Any], notes: list[str], settings: dict[str, Any]
) -> None:
    def clean(value: Any) -> Any:  # JSON has no NaN
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    document = {
        "settings": settings,
        "table": [{"part": p, "measure": m, "value": clean(v)} for p, m, v in rows],
        "results": clean(results),
        "notes": notes,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


RATIOS = (("batch", "limit"), ("single", "limit"), ("batch", "celery"), ("single", "celery"))


def round_ratios(rates: dict[str, float]) -> dict[str, float]:
    return {f"baton_{top}/{bottom}": ratio(rates[top], rates[bottom]) for top, bottom in RATIOS}


def spread_rows(rounds: list[dict[str, float]]) -> tuple[list[Row], dict[str, Any]]:
    """Per ratio and per rate: the median over the rounds and its range."""
    rows: list[Row] = []
    summary: dict[str, Any] = {"rounds": rounds}
    per_round = [round_ratios(rates) for rates in rounds]
    part = f"ratios, {len(rounds)} rounds"
    for name in per_round[0]:
        values = [r[name] for r in per_round if not math.isnan(r[name])]
        if values:
            summary[name] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        rows.append((part, f"{name}: median (min-max)", _spread(values)))
    for name in ("limit", "single", "batch", "celery"):
        rows.append((f"jobs/s, {len(rounds)} rounds", f"{name}: median (min-max)", _spread([r[name] for r in rounds])))
    return rows, summary


def _spread(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]  # a round with no rate to divide by
    if not values:
        return "n/a"
    digits = 2 if max(values) < 10 else 0
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"
