"""Settings shared by every Baton process, read from the environment once, in `__main__`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    return _secrets_by_owner(raw, "BATON_API_KEYS", "tenant:key", check_tenant_id, "tenants")


def parse_service_tokens(raw: str) -> dict[str, str]:
    """`service:token,service:token` -> {token: service}: each token speaks for one service only."""
    return _secrets_by_owner(raw, "BATON_SERVICE_TOKEN", "service:token", check_service_name, "services")


def _secrets_by_owner(
    raw: str, variable: str, shape: str, check_owner: Callable[[str], str], owners: str
) -> dict[str, str]:
    """`owner:secret,...` -> {secret: owner}, each owner name checked, no secret given to two owners."""
    found: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        owner, sep, secret = item.partition(":")
        if not sep or not secret:
            # The entry is not echoed: it may be a secret without its owner.
            raise SettingsError(f"{variable} entries are {shape}")
        try:
            check_owner(owner)
        except ValueError as exc:
            raise SettingsError(f"{variable}: {exc}") from exc
        if found.get(secret, owner) != owner:
            raise SettingsError(f"{variable} gives one secret to two {owners}")
        found[secret] = owner
    return found


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
