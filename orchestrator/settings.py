"""The orchestrator's settings: one frozen object, read from the environment in `__main__` and passed down.

Names, defaults and meanings are those of the README's settings table; `plumbing.settings` says how
the object is built (`from_env` reads variables, keyword arguments never do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Self

from pydantic import BeforeValidator, Field, PositiveFloat, PositiveInt, field_validator, model_validator
from yarl import URL

from orchestrator.rates import Rate, parse_rate
from orchestrator.store import keys
from orchestrator.store.event_tails import DEFAULT_HISTORY_MAX, MAX_HISTORY_MAX
from plumbing.settings import EnvSettings, SharedSettings, secrets_by_owner
from protocol.names import check_tenant_id

DEFAULT_ORCHESTRATOR_PORT: Final[int] = 8000
DEFAULT_ORCHESTRATOR_HOST: Final[str] = "127.0.0.1"
# `python -m orchestrator --processes N` (orchestrator.process_group): more would outnumber any host's cores.
MAX_PROCESSES: Final[int] = 64
DEV_TENANT: Final[str] = "dev"  # the tenant of the key made at start when BATON_API_KEYS is unset
# 200 jobs/s per tenant, 2,000 at once: above what one client of the test suite posts, far below what
# one tenant would need to crowd a deployment's Redis and broker out (the benchmark sets its own).
DEFAULT_JOB_QUOTA: Final[Rate] = Rate(200.0, 2000)
# Client messages per WebSocket: a client subscribes, pings and cancels; a burst covers a page load.
DEFAULT_WS_MESSAGE_RATE: Final[Rate] = Rate(100.0, 500)
ANY_ORIGIN: Final[str] = "*"


def _rate_or_off(value: Any) -> Any:
    return parse_rate(value) if isinstance(value, str) else value


# A rate variable: `200/s:2000`, or `off` (None).
RateSetting = Annotated[Rate | None, BeforeValidator(_rate_or_off)]


class SweeperSettings(EnvSettings):
    """The stuck-job sweeper (orchestrator.jobs.sweeper)."""

    interval_seconds: PositiveFloat = Field(default=30.0, validation_alias="BATON_SWEEP_INTERVAL_SECONDS")
    # running or retrying with no event for this long
    running_stale_seconds: PositiveFloat = Field(default=600.0, validation_alias="BATON_STUCK_RUNNING_SECONDS")
    queued_stale_seconds: PositiveFloat = Field(default=3600.0, validation_alias="BATON_STUCK_QUEUED_SECONDS")
    batch: int = 500  # jobs looked at per tenant and status per round
    # None: every tenant. A set restricts sweeping (a canary, or a test sharing Redis with others).
    tenants: frozenset[str] | None = None
    lock_key: str = Field(default_factory=keys.sweeper_lock)

    @property
    def lock_ttl_seconds(self) -> float:
        """Long enough to cover a round and the pause after it, so the holder keeps the lock."""
        return max(3 * self.interval_seconds, 10.0)


class QuotaSettings(EnvSettings):
    """Job creation per tenant (orchestrator.jobs.quota): a token bucket in Redis, shared by every replica."""

    # None: no quota
    jobs: RateSetting = Field(default=DEFAULT_JOB_QUOTA, validation_alias="BATON_JOB_QUOTA")
    per_tenant: Mapping[str, Rate | None] = Field(default_factory=dict, validation_alias="BATON_TENANT_JOB_QUOTAS")

    def rate_for(self, tenant_id: str) -> Rate | None:
        return self.per_tenant.get(tenant_id, self.jobs)

    @field_validator("per_tenant", mode="before")
    @classmethod
    def _parse_tenant_rates(cls, value: Any) -> Any:
        """`tenant:200/s:2000,tenant:off` -> {tenant: Rate or None}."""
        if not isinstance(value, str):
            return value
        found: dict[str, Rate | None] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            tenant, sep, rate = item.partition(":")
            if not sep:
                raise ValueError("entries are tenant:<count>/<s|m|h>:<burst> or tenant:off")
            if check_tenant_id(tenant) in found:
                raise ValueError(f"tenant {tenant!r} is given twice")
            found[tenant] = parse_rate(rate)
        return found


class WebSocketSettings(EnvSettings):
    """Limits of one process's WebSockets (orchestrator.live.admission)."""

    max_connections: PositiveInt = Field(default=10_000, validation_alias="BATON_WS_MAX_CONNECTIONS")
    max_per_tenant: PositiveInt = Field(default=1_000, validation_alias="BATON_WS_MAX_PER_TENANT")
    # Sockets opened without credentials, waiting for their first-message auth.
    max_unauthenticated: PositiveInt = Field(default=1_000, validation_alias="BATON_WS_MAX_UNAUTHENTICATED")
    auth_timeout_seconds: PositiveFloat = Field(default=10.0, validation_alias="BATON_WS_AUTH_TIMEOUT_SECONDS")
    message_rate: RateSetting = Field(default=DEFAULT_WS_MESSAGE_RATE, validation_alias="BATON_WS_MESSAGE_RATE")
    # Messages waiting for one client past which it is cut off as slow (orchestrator.live.hub). A client
    # following all of a tenant's jobs gets two per job: at 1,000 a healthy one was cut off by a burst of
    # 2,000 jobs/s (four batches of 250 at once) whenever it paused to do its own work.
    client_buffer: PositiveInt = Field(default=10_000, validation_alias="BATON_WS_CLIENT_BUFFER")
    # Origins (scheme://host[:port]) browsers may upgrade from; None: the request's own host only.
    allowed_origins: frozenset[str] | None = Field(default=None, validation_alias="BATON_ALLOWED_ORIGINS")

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        """`https://app.example.com,http://localhost:3000`, or `*` for any origin."""
        if not isinstance(value, str):
            return value
        return frozenset(normal_origin(item) for item in value.split(",") if item.strip())


def normal_origin(origin: str) -> str:
    """An Origin as browsers send it (`scheme://host[:port]`, lower case), or `*`; ValueError otherwise."""
    origin = origin.strip().rstrip("/").lower()
    if origin == ANY_ORIGIN:
        return origin
    url = URL(origin)
    if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/") or url.query_string:
        raise ValueError(f"an origin is scheme://host[:port] (or {ANY_ORIGIN}), not {origin!r}")
    return origin


class OrchestratorSettings(SharedSettings):
    orchestrator_port: PositiveInt = Field(default=DEFAULT_ORCHESTRATOR_PORT, validation_alias="ORCHESTRATOR_PORT")
    orchestrator_host: str = Field(default=DEFAULT_ORCHESTRATOR_HOST, validation_alias="ORCHESTRATOR_HOST")
    # Orchestrator processes sharing the port (SO_REUSEPORT); the --processes flag wins over it.
    processes: int = Field(default=1, ge=1, le=MAX_PROCESSES, validation_alias="ORCHESTRATOR_PROCESSES")
    # key -> tenant; None when BATON_API_KEYS is unset (a dev key is generated then)
    api_keys: Mapping[str, str] | None = Field(default=None, validation_alias="BATON_API_KEYS", repr=False)
    admin_key: str | None = Field(default=None, validation_alias="BATON_ADMIN_KEY", repr=False)
    sweeper: SweeperSettings = Field(default_factory=SweeperSettings)
    # Identical requests attach to one running cache-enabled job for at most this long (a lost job).
    cache_in_flight_seconds: PositiveInt = Field(default=3600, validation_alias="BATON_CACHE_IN_FLIGHT_SECONDS")
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    websockets: WebSocketSettings = Field(default_factory=WebSocketSettings)
    # Client events kept per job for resuming clients (WebSocket `since`, GET /jobs/{id}/events).
    event_history_max: int = Field(
        default=DEFAULT_HISTORY_MAX, ge=1, le=MAX_HISTORY_MAX, validation_alias="BATON_EVENT_HISTORY_MAX"
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        """`tenant:key,tenant:key` -> {key: tenant}."""
        if isinstance(value, str):
            return secrets_by_owner(value, "tenant:key", check_tenant_id, "tenants")
        return value

    @model_validator(mode="after")
    def _quotas_name_known_tenants(self) -> Self:
        """A quota for a tenant no key has is a typo that would leave the real tenant on the default."""
        tenants = set(self.api_keys.values()) if self.api_keys is not None else {DEV_TENANT}
        unknown = sorted(set(self.quotas.per_tenant) - tenants)
        if unknown:
            raise ValueError(f"BATON_TENANT_JOB_QUOTAS names tenants no key of BATON_API_KEYS has: {unknown}")
        return self
