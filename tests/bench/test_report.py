"""The benchmark's report: pure functions, checked without running a benchmark."""

from __future__ import annotations

from tests.bench.report import spread_rows


def test_each_ratio_and_rate_gets_its_median_and_range_over_the_rounds() -> None:
    rounds = [
        {"limit": 1000.0, "single": 300.0, "batch": 400.0, "celery": 500.0},
        {"limit": 800.0, "single": 320.0, "batch": 360.0, "celery": 600.0},
        {"limit": 1200.0, "single": 240.0, "batch": 480.0, "celery": 400.0},
    ]
    rows, summary = spread_rows(rounds)
    assert summary["baton_batch/limit"] == {"median": 0.4, "min": 0.4, "max": 0.45}
    assert summary["baton_single/celery"]["median"] == 0.6
    table = {measure: value for _, measure, value in rows}
    assert table["baton_batch/limit: median (min-max)"] == "0.40 (0.40-0.45)"
    assert table["limit: median (min-max)"] == "1000 (800-1200)"
    assert summary["rounds"] == rounds


def test_a_round_without_a_rate_is_left_out_of_its_ratios() -> None:
    rounds = [
        {"limit": 1000.0, "single": 300.0, "batch": 400.0, "celery": 500.0},
        {"limit": 0.0, "single": 320.0, "batch": 360.0, "celery": 600.0},
    ]
    rows, summary = spread_rows(rounds)
    assert summary["baton_batch/limit"] == {"median": 0.4, "min": 0.4, "max": 0.4}
    assert dict((measure, value) for _, measure, value in rows)["batch: median (min-max)"] == "380 (360-400)"
