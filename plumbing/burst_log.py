"""A warning that may recur in floods (forged or broken messages, a Redis that is down), logged once per burst."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any


class BurstLog:
    """The first warning of a kind is logged at once; later ones at most once per `interval` seconds,
    saying how many were left out meanwhile. Metrics count every one; the log only needs to say
    that it is happening."""

    def __init__(
        self, logger: logging.Logger, interval: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._logged_at: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        now = self._clock()
        logged_at = self._logged_at.get(kind)
        if logged_at is not None and now - logged_at < self._interval:
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return
        self._logged_at[kind] = now
        left_out = self._left_out.pop(kind, 0)
        if left_out:
            message += f" ({left_out} more since the last such warning)"
        self._logger.warning(message, *args)
