"""LabelledSeries: the same child prometheus_client keeps, looked up once per label values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from plumbing.metric_series import LabelledSeries


def test_each_label_combination_is_the_metrics_own_child_and_counts_there() -> None:
    registry = CollectorRegistry()
    requests = Counter("requests", "requests", ["route", "status"], registry=registry)
    series = LabelledSeries(requests)

    series.get("/jobs", "202").inc()
    series.get("/jobs", "202").inc()
    series.get("/jobs", "503").inc()

    assert series.get("/jobs", "202") is requests.labels("/jobs", "202")
    assert registry.get_sample_value("requests_total", {"route": "/jobs", "status": "202"}) == 2
    assert registry.get_sample_value("requests_total", {"route": "/jobs", "status": "503"}) == 1
