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


PEERS = ("limit", "celery", "dramatiq")
RATIOS = tuple((mode, peer) for peer in PEERS for mode in ("batch", "single"))
SYSTEMS = ("limit", "single", "batch", "celery", "dramatiq")


def round_ratios(rates: dict[str, float]) -> dict[str, float]:
    """Baton's batch and single jobs/s over each peer's; NaN for a peer the round has no rate of."""
    return {f"baton_{top}/{bottom}": ratio(rates.get(top), rates.get(bottom)) for top, bottom in RATIOS}


def cpu_rows(runs: dict[str, dict[str, Any]]) -> list[Row]:
    """CPU ms per job of every process (with its write syscalls per job where measured), for each
    full-speed run; then every run's total side by side: where the two cores went, system by system."""
    rows: list[Row] = []
    for run, measured in runs.items():
        cpu, writes = measured["cpu_ms"], measured.get("writes", {})
        rows += [
            (
                f"CPU ms/job, {run}",
                process,
                f"{cpu[process]:.2f}" + (f" ({writes[process]:.1f} writes)" if process in writes else ""),
            )
            for process in cpu
        ]
    rows += [("CPU ms/job, all processes", run, f"{measured['cpu_ms']['all']:.2f}") for run, measured in runs.items()]
    return rows


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
    for name in SYSTEMS:
        rates = [r.get(name, float("nan")) for r in rounds]
        rows.append((f"jobs/s, {len(rounds)} rounds", f"{name}: median (min-max)", _spread(rates)))
    return rows, summary


def _spread(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]  # a round with no rate to divide by
    if not values:
        return "n/a"
    digits = 2 if max(values) < 10 else 0
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"
