"""The worker process settings: one frozen object, read from the environment in `__main__` and passed down.

Names, defaults and meanings are those of the README's settings table; `plumbing.settings` says how
the object is built (`from_env` reads variables, keyword arguments never do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from plumbing.settings import EnvSettings, SharedSettings
from protocol.control import MAX_REPORTED_BREAKERS
from protocol.names import check_tenant_id
from workers.breaker import DEFAULT_COOLDOWN_SECONDS, DEFAULT_FAILURE_THRESHOLD, DEFAULT_MAX_TARGETS
from workers.errors import ConfigurationError
from workers.rate_limit import RateLimit, parse_rate_limit

DEFAULT_SHUTDOWN_GRACE_SECONDS: Final[float] = 30.0
DEFAULT_HEARTBEAT_SECONDS: Final[float] = 5.0
DEFAULT_CONNECT_TIMEOUT_SECONDS: Final[float] = 10.0
DEFAULT_HTTP_TIMEOUT_SECONDS: Final[float] = 30.0
DEFAULT_HTTP_RETRIES: Final[int] = 2
DEFAULT_HTTP_MAX_RETRY_AFTER_SECONDS: Final[float] = 60.0
DEFAULT_ORCHESTRATOR_URL: Final[str] = "http://localhost:8000"
DEFAULT_LLM_MODEL: Final[str] = "gpt-4o-mini"
DEFAULT_LLM_TIMEOUT_SECONDS: Final[float] = 120.0
# RabbitMQ closes the channel of a consumer that holds a delivery unacked longer than its
# `consumer_timeout` (30 min by default on 3.x), which would kill every task on that channel.
# Time limits are capped below this; deploy raises the broker's value and sets this to match.
DEFAULT_CONSUMER_TIMEOUT_SECONDS: Final[float] = 1800.0
DEFAULT_LANE_REFRESH_SECONDS: Final[float] = 15.0
DEFAULT_METRICS_HOST: Final[str] = "127.0.0.1"
EVERY_OTHER_TENANT: Final[str] = "*"  # in BATON_TENANT_WEIGHTS and BATON_TENANT_MAX_RUNNING: the default


def _rate_limit_setting(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return parse_rate_limit(value)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None  # so SettingsError names the variable


RateLimitSetting = Annotated[RateLimit, BeforeValidator(_rate_limit_setting)]


class LlmSettings(EnvSettings):
    """An OpenAI-compatible chat completions endpoint; without `base_url` the query service answers locally."""

    base_url: str | None = Field(default=None, validation_alias="LLM_BASE_URL")
    api_key: str | None = Field(default=None, validation_alias="LLM_API_KEY", repr=False)
    model: str = Field(default=DEFAULT_LLM_MODEL, validation_alias="LLM_MODEL")
    timeout_seconds: PositiveFloat = Field(default=DEFAULT_LLM_TIMEOUT_SECONDS, validation_alias="LLM_TIMEOUT_SECONDS")
    # Chat completions started over every query process; None: the query profile's rate_limit_per_minute.
    rate_limit: RateLimitSetting | None = Field(default=None, validation_alias="LLM_RATE_LIMIT")

    @field_validator("base_url")
    @classmethod
    def _without_trailing_slash(cls, value: str | None) -> str | None:
        return (value or "").rstrip("/") or None


class WorkerSettings(SharedSettings):
    """The shared variables (`redis_url` is the delivery ledger's Redis) and the worker's own."""

    # The Worker's own concurrency and prefetch, overridden when set.
    concurrency: PositiveInt | None = Field(default=None, validation_alias="BATON_WORKER_CONCURRENCY")
    prefetch: PositiveInt | None = Field(default=None, validation_alias="BATON_WORKER_PREFETCH")
    # The Worker's own limits over every process of the service, overridden when set.
    rate_limit: RateLimitSetting | None = Field(default=None, validation_alias="BATON_WORKER_RATE_LIMIT")
    max_concurrency: PositiveInt | None = Field(default=None, validation_alias="BATON_WORKER_MAX_CONCURRENCY")
    # Per RabbitMQ connection attempt.
    connect_timeout_seconds: PositiveFloat = Field(
        default=DEFAULT_CONNECT_TIMEOUT_SECONDS, validation_alias="BATON_CONNECT_TIMEOUT_SECONDS"
    )
    shutdown_grace_seconds: PositiveFloat = Field(
        default=DEFAULT_SHUTDOWN_GRACE_SECONDS, validation_alias="BATON_SHUTDOWN_GRACE_SECONDS"
    )
    heartbeat_seconds: PositiveFloat = Field(
        default=DEFAULT_HEARTBEAT_SECONDS, validation_alias="BATON_HEARTBEAT_SECONDS"
    )
    http_timeout_seconds: PositiveFloat = Field(
        default=DEFAULT_HTTP_TIMEOUT_SECONDS, validation_alias="BATON_HTTP_TIMEOUT_SECONDS"
    )
    http_retries: NonNegativeInt = Field(default=DEFAULT_HTTP_RETRIES, validation_alias="BATON_HTTP_RETRIES")
    # The longest wait an upstream's Retry-After gets before the call is sent again.
    http_max_retry_after_seconds: PositiveFloat = Field(
        default=DEFAULT_HTTP_MAX_RETRY_AFTER_SECONDS, validation_alias="BATON_HTTP_MAX_RETRY_AFTER_SECONDS"
    )
    breaker_failure_threshold: PositiveInt = Field(
        default=DEFAULT_FAILURE_THRESHOLD, validation_alias="BATON_BREAKER_FAILURE_THRESHOLD"
    )
    breaker_cooldown_seconds: PositiveFloat = Field(
        default=DEFAULT_COOLDOWN_SECONDS, validation_alias="BATON_BREAKER_COOLDOWN_SECONDS"
    )
    # Targets with a breaker per process, all reported with the heartbeat.
    breaker_max_targets: int = Field(
        default=DEFAULT_MAX_TARGETS, ge=1, le=MAX_REPORTED_BREAKERS, validation_alias="BATON_BREAKER_MAX_TARGETS"
    )
    consumer_timeout_seconds: PositiveFloat = Field(
        default=DEFAULT_CONSUMER_TIMEOUT_SECONDS, validation_alias="BATON_CONSUMER_TIMEOUT_SECONDS"
    )
    # Tenant fairness in this process: `tenant:n,...`, `*:n` for every tenant not named.
    tenant_weights: Mapping[str, PositiveInt] = Field(default_factory=dict, validation_alias="BATON_TENANT_WEIGHTS")
    tenant_max_running: Mapping[str, PositiveInt] = Field(
        default_factory=dict, validation_alias="BATON_TENANT_MAX_RUNNING"
    )
    # How often the lane set is read again, for a lane whose broadcast this process missed.
    lane_refresh_seconds: PositiveFloat = Field(
        default=DEFAULT_LANE_REFRESH_SECONDS, validation_alias="BATON_LANE_REFRESH_SECONDS"
    )
    # GET /metrics of this process (Prometheus); 0: off; unset: the Worker's `metrics_port` (off by default).
    # Each process on one host needs a port of its own.
    metrics_port: int | None = Field(default=None, ge=0, le=65535, validation_alias="BATON_WORKER_METRICS_PORT")
    # Where the metrics port listens: 0.0.0.0 in a container, so Prometheus in another one reaches it.
    metrics_host: str = Field(default=DEFAULT_METRICS_HOST, validation_alias="BATON_WORKER_METRICS_HOST")
    llm: LlmSettings = Field(default_factory=LlmSettings)
    # Where `ctx.submit_job` creates child jobs (POST /jobs), with this service's token.
    orchestrator_url: str = Field(default=DEFAULT_ORCHESTRATOR_URL, validation_alias="BATON_ORCHESTRATOR_URL")

    @field_validator("orchestrator_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        url = value.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url

    def service_token(self, service: str) -> str | None:
        """The token `service` speaks with to the orchestrator (the last one given, while rotating)."""
        found = [token for token, owner in (self.service_tokens or {}).items() if owner == service]
        return found[-1] if found else None

    @field_validator("tenant_weights", "tenant_max_running", mode="before")
    @classmethod
    def _parse_per_tenant(cls, value: Any) -> Any:
        """`tenant:n,tenant:n,*:n` -> {tenant: n}; the numbers are checked by the field's type."""
        if not isinstance(value, str):
            return value
        found: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            tenant, sep, number = item.partition(":")
            if not sep or not number.strip():
                raise ValueError("each item must be tenant:number (or *:number for every other tenant)")
            tenant = tenant.strip()
            if tenant != EVERY_OTHER_TENANT:
                check_tenant_id(tenant)
            if tenant in found:
                raise ValueError(f"tenant {tenant!r} is named twice")
            found[tenant] = number.strip()
        return found
