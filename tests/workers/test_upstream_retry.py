"""Retry-After parsing and the retry rules of ctx.http, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workers.upstream_retry import BackoffPolicy, may_retry, retry_after_seconds

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("Sun, 01 Mar 2026 12:00:07 GMT", 7.0),
        ("Sun, 01 Mar 2026 11:59:00 GMT", 0.0),  # already past: go now
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_delta_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, NOW) == seconds


def test_the_delay_follows_retry_after_capped_and_else_backs_off_with_jitter() -> None:
    policy = BackoffPolicy(backoff_seconds=0.2, max_backoff_seconds=5.0, max_retry_after_seconds=60.0)
    assert policy.delay(0, "3", NOW) == 3.0
    assert policy.delay(0, "3600", NOW) == 60.0
    # garbage: the backoff, between half and all of base * 2^retry
    assert policy.delay(2, "garbage", NOW, rand=lambda: 0.0) == pytest.approx(0.4)
    assert policy.delay(2, None, NOW, rand=lambda: 1.0) == pytest.approx(0.8)
    assert policy.backoff(50, rand=lambda: 1.0) == 5.0  # capped


@pytest.mark.parametrize(
    ("status", "idempotent", "retried"),
    [
        (429, False, True),  # not processed: any method
        (503, False, False),  # may have taken effect: only when the caller says it is safe
        (503, True, True),
        (500, True, True),
        (None, False, False),
        (None, True, True),
        (404, True, False),
        (200, True, False),
    ],
)
def test_what_is_retried(status: int | None, idempotent: bool, retried: bool) -> None:
    assert may_retry(status, idempotent=idempotent) is retried
