"""The worker process settings: one frozen object, built once in `__main__` and passed down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from protocol.codec import DEFAULT_MAX_MESSAGE_BYTES
from protocol.settings import DEFAULT_RABBITMQ_URL, DEFAULT_REDIS_URL, Settings, env_float, env_optional_int

DEFAULT_SHUTDOWN_GRACE_SECONDS: Final[float] = 30.0
DEFAULT_HEARTBEAT_SECONDS: Final[float] = 5.0
DEFAULT_CONNECT_TIMEOUT_SECONDS: Final[float] = 10.0
DEFAULT_HTTP_TIMEOUT_SECONDS: Final[float] = 30.0
DEFAULT_HTTP_RETRIES: Final[int] = 2
DEFAULT_LLM_MODEL: Final[str] = "gpt-4o-mini"
DEFAULT_LLM_TIMEOUT_SECONDS: Final[float] = 120.0
# RabbitMQ closes the channel of a consumer that holds a delivery unacked longer than its
# `consumer_timeout` (30 min by default on 3.x), which would kill every task on that channel.
# Time limits are capped below this; deploy raises the broker's value and sets this to match.
DEFAULT_CONSUMER_TIMEOUT_SECONDS: Final[float] = 1800.0


@dataclass(frozen=True)
class LlmSettings:
    """An OpenAI-compatible chat completions endpoint; without `base_url` the query service answers locally."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model: str = DEFAULT_LLM_MODEL
    timeout_seconds: float = DEFAULT_LLM_TIMEOUT_SECONDS


@dataclass(frozen=True)
class WorkerSettings:
    rabbitmq_url: str = DEFAULT_RABBITMQ_URL
    redis_url: str = DEFAULT_REDIS_URL  # the delivery ledger (protocol.ledger)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    concurrency: int | None = None  # overrides the Worker's own when set
    prefetch: int | None = None
    connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS  # per RabbitMQ connection attempt
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_SECONDS
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    http_timeout_seconds: float = DEFAULT_HTTP_TIMEOUT_SECONDS
    http_retries: int = DEFAULT_HTTP_RETRIES
    consumer_timeout_seconds: float = DEFAULT_CONSUMER_TIMEOUT_SECONDS
    llm: LlmSettings = field(default_factory=LlmSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerSettings:
        """Shared settings plus the worker's own variables; call it from `__main__` only."""
        shared = Settings.from_env(env)
        http_retries = env_optional_int(env, "BATON_HTTP_RETRIES", allow_zero=True)
        return cls(
            rabbitmq_url=shared.rabbitmq_url,
            redis_url=shared.redis_url,
            max_message_bytes=shared.max_message_bytes,
            concurrency=env_optional_int(env, "BATON_WORKER_CONCURRENCY"),
            prefetch=env_optional_int(env, "BATON_WORKER_PREFETCH"),
            connect_timeout_seconds=env_float(env, "BATON_CONNECT_TIMEOUT_SECONDS", DEFAULT_CONNECT_TIMEOUT_SECONDS),
            shutdown_grace_seconds=env_float(env, "BATON_SHUTDOWN_GRACE_SECONDS", DEFAULT_SHUTDOWN_GRACE_SECONDS),
            heartbeat_seconds=env_float(env, "BATON_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS),
            http_timeout_seconds=env_float(env, "BATON_HTTP_TIMEOUT_SECONDS", DEFAULT_HTTP_TIMEOUT_SECONDS),
            http_retries=DEFAULT_HTTP_RETRIES if http_retries is None else http_retries,
            consumer_timeout_seconds=env_float(env, "BATON_CONSUMER_TIMEOUT_SECONDS", DEFAULT_CONSUMER_TIMEOUT_SECONDS),
            llm=LlmSettings(
                base_url=(env.get("LLM_BASE_URL") or "").rstrip("/") or None,
                api_key=env.get("LLM_API_KEY") or None,
                model=env.get("LLM_MODEL") or DEFAULT_LLM_MODEL,
                timeout_seconds=env_float(env, "LLM_TIMEOUT_SECONDS", DEFAULT_LLM_TIMEOUT_SECONDS),
            ),
        )
