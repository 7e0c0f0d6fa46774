"""A Worker refuses a service name or job type that matches the rule only up to a trailing newline."""

from __future__ import annotations

import pytest

from workers import Worker
from workers.errors import ConfigurationError


def test_a_job_type_with_a_trailing_newline_is_refused() -> None:
    worker = Worker("names")
    with pytest.raises(ConfigurationError, match="must match"):
        worker.handler("add\n")


def test_a_service_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises((ConfigurationError, ValueError), match="must match"):
        Worker("names\n")
