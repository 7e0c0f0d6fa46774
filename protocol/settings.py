"""Settings shared by every Baton process, read from the environment once, in `__main__`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from protocol.codec import DEFAULT_MAX_MESSAGE_BYTES
from protocol.names import check_service_name, check_tenant_id

DEFAULT_RABBITMQ_URL: Final[str] = "amqp://guest:guest@localhost:5672/"
DEFAULT_REDIS_URL: Final[str] = "redis://localhost:6379/0"
DEFAULT_ORCHESTRATOR_PORT: Final[int] = 8000
DEFAULT_ORCHESTRATOR_HOST: Final[str] = "127.0.0.1"


class SettingsError(ValueError):
    """An environment variable has a value Baton cannot use."""


@dataclass(frozen=True)
class Settings:
    rabbitmq_url: str = DEFAULT_RABBITMQ_URL
    redis_url: str = DEFAULT_REDIS_URL
    orchestrator_port: int = DEFAULT_ORCHESTRATOR_PORT
    orchestrator_host: str = DEFAULT_ORCHESTRATOR_HOST
    api_keys: Mapping[str, str] | None = None  # key -> tenant; None when BATON_API_KEYS is unset
    admin_key: str | None = None
    service_tokens: Mapping[str, str] | None = None  # token -> the one service it speaks for
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            rabbitmq_url=env.get("RABBITMQ_URL") or DEFAULT_RABBITMQ_URL,
            redis_url=env.get("REDIS_URL") or DEFAULT_REDIS_URL,
            orchestrator_port=env_int(env, "ORCHESTRATOR_PORT", DEFAULT_ORCHESTRATOR_PORT),
            orchestrator_host=env.get("ORCHESTRATOR_HOST") or DEFAULT_ORCHESTRATOR_HOST,
            api_keys=parse_api_keys(env["BATON_API_KEYS"]) if env.get("BATON_API_KEYS") else None,
            admin_key=env.get("BATON_ADMIN_KEY") or None,
            service_tokens=parse_service_tokens(env["BATON_SERVICE_TOKEN"]) if env.get("BATON_SERVICE_TOKEN") else None,
            max_message_bytes=env_int(env, "BATON_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES),
        )


def parse_api_keys(raw: str) -> dict[str, str]:
    """`tenant:key,tenant:key` -> {key: tenant}."""
    keys: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        tenant, sep, key = item.partition(":")
        if not sep or not key:
            raise SettingsError(f"BATON_API_KEYS entry {item!r} is not tenant:key")
        try:
            check_tenant_id(tenant)
        except ValueError as exc:
            raise SettingsError(f"BATON_API_KEYS: {exc}") from exc
        if key in keys and keys[key] != tenant:
            raise SettingsError("BATON_API_KEYS gives one key to two tenants")
        keys[key] = tenant
    return keys


def parse_service_tokens(raw: str) -> dict[str, str]:
    """`service:token,service:token` -> {token: service}: each token is scoped to one service."""
    tokens: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        service, sep, token = item.partition(":")
        if not sep or not token:
            raise SettingsError(
                "BATON_SERVICE_TOKEN entries are service:token (a token speaks for one service only), "
                "e.g. BATON_SERVICE_TOKEN=ocr:<token>"
            )
        try:
            check_service_name(service)
        except ValueError as exc:
            raise SettingsError(f"BATON_SERVICE_TOKEN: {exc}") from exc
        if tokens.get(token, service) != service:
            raise SettingsError("BATON_SERVICE_TOKEN gives one token to two services")
        tokens[token] = service
    return tokens


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    """A positive integer variable, or `default` when unset or empty."""
    value = env_optional_int(env, name)
    return default if value is None else value


def env_optional_int(env: Mapping[str, str], name: str, *, allow_zero: bool = False) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not an integer") from exc
    if value < 0 or (value == 0 and not allow_zero):
        raise SettingsError(f"{name} must be {'zero or more' if allow_zero else 'positive'}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number variable, or `default` when unset or empty."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a number") from exc
    if not value > 0:  # also refuses NaN
        raise SettingsError(f"{name} must be positive")
    return value
