"""The orchestrator's settings: one frozen object, read from the environment in `__main__` and passed down.

Names, defaults and meanings are those of the README's settings table; `plumbing.settings` says how
the object is built (`from_env` reads variables, keyword arguments never do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from orchestrator.store import keys
from plumbing.settings import EnvSettings, SharedSettings, secrets_by_owner
from protocol.names import check_tenant_id

DEFAULT_ORCHESTRATOR_PORT: Final[int] = 8000
DEFAULT_ORCHESTRATOR_HOST: Final[str] = "127.0.0.1"


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


class OrchestratorSettings(SharedSettings):
    orchestrator_port: PositiveInt = Field(default=DEFAULT_ORCHESTRATOR_PORT, validation_alias="ORCHESTRATOR_PORT")
    orchestrator_host: str = Field(default=DEFAULT_ORCHESTRATOR_HOST, validation_alias="ORCHESTRATOR_HOST")
    # key -> tenant; None when BATON_API_KEYS is unset (a dev key is generated then)
    api_keys: Mapping[str, str] | None = Field(default=None, validation_alias="BATON_API_KEYS", repr=False)
    admin_key: str | None = Field(default=None, validation_alias="BATON_ADMIN_KEY", repr=False)
    sweeper: SweeperSettings = Field(default_factory=SweeperSettings)
    # Identical requests attach to one running cache-enabled job for at most this long (a lost job).
    cache_in_flight_seconds: PositiveInt = Field(default=3600, validation_alias="BATON_CACHE_IN_FLIGHT_SECONDS")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        """`tenant:key,tenant:key` -> {key: tenant}."""
        if isinstance(value, str):
            return secrets_by_owner(value, "tenant:key", check_tenant_id, "tenants")
        return value
