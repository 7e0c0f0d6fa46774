"""tests.bench.ab's pure parts: the NAME=VALUE environments, and the report's per-pair ratios and medians."""

from __future__ import annotations

import pytest

from tests.bench.ab import MEASURES, parse_env, report


def test_an_environment_is_name_value_pairs_and_anything_else_stops_the_run() -> None:
    assert parse_env(["BATON_X=1", "BATON_Y=a=b", "BATON_Z="]) == {"BATON_X": "1", "BATON_Y": "a=b", "BATON_Z": ""}
    for bad in ("BATON_X", "=1"):
        with pytest.raises(SystemExit, match="not NAME=VALUE"):
            parse_env([bad])


def test_the_report_gives_each_pair_and_the_median_of_the_b_over_a_ratios() -> None:
    a = dict.fromkeys(MEASURES, 100.0)
    runs = [(a, dict.fromkeys(MEASURES, b)) for b in (90.0, 110.0, 130.0)]
    text = report(runs, {"BATON_X": "0"}, {})
    assert "A: {'BATON_X': '0'}" in text and "B: (the defaults)" in text
    assert "100.00 / 130.00" in text
    for measure in MEASURES:
        assert f"B/A {measure:<18} median 1.10 (pairs: 0.90-1.30)" in text
