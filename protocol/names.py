"""Rules for the names that end up in AMQP routing keys and Redis keys.

The patterns are anchored with `^...$` for pydantic (`Field(pattern=...)`), whose Rust regex reads
`$` as the end of the text. Python's `re` reads `$` as "end, or before a final newline", so Python
code applies them only through the checks here, which use `fullmatch`: "query\\n" is not a name.
"""

from __future__ import annotations

import re
from typing import Final, TypeGuard

# Dots, '#' and '*' would break topic routing keys; ':' would break Redis keys.
TENANT_ID_PATTERN: Final[str] = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SERVICE_NAME_PATTERN: Final[str] = r"^[a-z0-9][a-z0-9_-]{0,62}$"
JOB_TYPE_PATTERN: Final[str] = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

_SERVICE_RE = re.compile(SERVICE_NAME_PATTERN)
_TENANT_RE = re.compile(TENANT_ID_PATTERN)
_JOB_TYPE_RE = re.compile(JOB_TYPE_PATTERN)


def is_tenant_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _TENANT_RE.fullmatch(value) is not None


def is_job_type(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _JOB_TYPE_RE.fullmatch(value) is not None


def check_service_name(name: str) -> str:
    if _SERVICE_RE.fullmatch(name) is None:
        raise ValueError(f"service name {name!r} must match {SERVICE_NAME_PATTERN}")
    return name


def check_tenant_id(tenant_id: str) -> str:
    if not is_tenant_id(tenant_id):
        raise ValueError(f"tenant id {tenant_id!r} must match {TENANT_ID_PATTERN}")
    return tenant_id


def check_job_type(job_type: str) -> str:
    if not is_job_type(job_type):
        raise ValueError(f"job type {job_type!r} must match {JOB_TYPE_PATTERN}")
    return job_type
