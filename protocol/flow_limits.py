"""Redis keys of the per-service flow limits (`Worker(rate_limit=..., max_concurrency=...)`).

Workers keep the limits; the orchestrator only reads them for /health and /metrics:
- `baton:limits:{service}:rate`: the rate limit's next free start (GCRA's theoretical arrival
  time, microseconds on the Redis clock);
- `baton:limits:{service}:leases`: sorted set, one member per running task (a lease id),
  scored by the lease's expiry (microseconds on the Redis clock); a lease not renewed expires;
- `baton:limits:{service}:stats`: hash with the configured limits (`rate_limit`, `max_concurrency`,
  as the last worker process to start set them) and the wait counters (`waits:<limit>`,
  `wait_seconds:<limit>`, limit being `rate` or `concurrency`);
- `baton:limits:services`: the services that have limits.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from protocol.names import check_service_name

FLOW_LIMITS_PREFIX: Final[str] = "baton:limits"
LIMITED_SERVICES_KEY: Final[str] = f"{FLOW_LIMITS_PREFIX}:services"
# The stats hash and the lease set outlive their last worker process by this long.
FLOW_LIMITS_TTL_SECONDS: Final[int] = 24 * 3600

RATE_LIMIT_FIELD: Final[str] = "rate_limit"
MAX_CONCURRENCY_FIELD: Final[str] = "max_concurrency"


class LimitKind(StrEnum):
    RATE = "rate"
    CONCURRENCY = "concurrency"


def waits_field(kind: LimitKind) -> str:
    return f"waits:{kind.value}"


def wait_seconds_field(kind: LimitKind) -> str:
    return f"wait_seconds:{kind.value}"


def _service_key(service: str, part: str) -> str:
    # Every per-service key has a suffix, so no service name (`services` included) meets LIMITED_SERVICES_KEY.
    return f"{FLOW_LIMITS_PREFIX}:{check_service_name(service)}:{part}"


def stats_key(service: str) -> str:
    return _service_key(service, "stats")


def rate_key(service: str) -> str:
    return _service_key(service, "rate")


def leases_key(service: str) -> str:
    return _service_key(service, "leases")
