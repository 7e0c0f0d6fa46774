"""Rules for the names that end up in AMQP routing keys and Redis keys."""

from __future__ import annotations

import re
from typing import Final

# Dots, '#' and '*' would break topic routing keys; ':' would break Redis keys.
TENANT_ID_PATTERN: Final[str] = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SERVICE_NAME_PATTERN: Final[str] = r"^[a-z0-9][a-z0-9_-]{0,62}$"
JOB_TYPE_PATTERN: Final[str] = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

_SERVICE_RE = re.compile(SERVICE_NAME_PATTERN)
_TENANT_RE = re.compile(TENANT_ID_PATTERN)


def check_service_name(name: str) -> str:
    if not _SERVICE_RE.match(name):
        raise ValueError(f"service name {name!r} must match {SERVICE_NAME_PATTERN}")
    return name


def check_tenant_id(tenant_id: str) -> str:
    if not _TENANT_RE.match(tenant_id):
        raise ValueError(f"tenant id {tenant_id!r} must match {TENANT_ID_PATTERN}")
    return tenant_id
