"""BurstLog: a flood of one warning is one line per interval, with the count of the rest."""

from __future__ import annotations

import logging

import pytest

from plumbing.burst_log import BurstLog


def test_a_burst_is_logged_once_then_once_per_interval_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    burst = BurstLog(logging.getLogger("test.burst"), interval=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.burst"):
        for n in range(1000):
            burst.warning("forged", "refused event %d", n)
        burst.warning("other", "another kind")
        now[0] += 61
        burst.warning("forged", "refused event %d", 1000)
    assert [r.getMessage() for r in caplog.records] == [
        "refused event 0",
        "another kind",
        "refused event 1000 (999 more since the last such warning)",
    ]
