"""Labelled Prometheus series, each looked up once: prometheus_client's `labels()` checks and sorts its
arguments and takes a lock on every call (1-5 µs), paid per request and per task on the hot paths.

The cache holds what prometheus_client holds anyway, one child per label combination, so it is as
bounded as the label values a caller uses (route patterns, job types, statuses: keep them few).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client.metrics import MetricWrapperBase

Metric = TypeVar("Metric", bound=MetricWrapperBase)


class LabelledSeries(Generic[Metric]):
    def __init__(self, metric: Metric) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Metric] = {}

    def get(self, *labels: str) -> Metric:
        """The series of these label values, in the metric's label order."""
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*labels)
        return child
