"""When an outgoing call is tried again, and after how long: the rules of `ctx.http`, without I/O.

A 429 means the upstream did not process the request, so it is retried whatever the method. A 5xx
or a lost connection may have come after the request took effect, so those are retried only for
methods that are idempotent, or calls whose caller said they are (`idempotent=True`). The wait is
the upstream's `Retry-After` (delta-seconds or an HTTP-date) when it sent a usable one, capped;
otherwise exponential backoff with jitter, so callers that failed together do not return together.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

IDEMPOTENT_METHODS: Final[frozenset[str]] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
TOO_MANY_REQUESTS: Final[int] = 429


def is_upstream_failure(status: int) -> bool:
    """A status that counts against the target's breaker and may be retried: 429 and every 5xx."""
    return status == TOO_MANY_REQUESTS or status >= 500


def may_retry(status: int | None, *, idempotent: bool) -> bool:
    """Whether a call that got `status` (None: no response) may be sent again."""
    if status is None:
        return idempotent
    if status == TOO_MANY_REQUESTS:
        return True
    return status >= 500 and idempotent


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """The wait a `Retry-After` header asks for (0 for a date already past); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT; a zone-less one is read as such
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class BackoffPolicy:
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0
    max_retry_after_seconds: float = 60.0

    def backoff(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before retry number `retry + 1` without a Retry-After: base * 2^retry, capped, and
        then between half and all of that ("equal jitter")."""
        full = min(self.max_backoff_seconds, self.backoff_seconds * 2.0 ** min(retry, 64))
        return full / 2 + rand() * full / 2

    def delay(
        self, retry: int, retry_after: str | None, now: datetime, rand: Callable[[], float] = random.random
    ) -> float:
        """The wait before retry number `retry + 1`: what Retry-After asks (capped), else the backoff."""
        asked = retry_after_seconds(retry_after, now)
        if asked is None:
            return self.backoff(retry, rand)
        return min(asked, self.max_retry_after_seconds)
