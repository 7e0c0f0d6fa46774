"""Settings from the environment: typed groups of variables, read once per process in `__main__`.

A settings class names each variable once, as its field's `validation_alias`, with its default and
type beside it. It is built one of two ways, and only one of them reads variables:

- `Settings.from_env(os.environ)` (or any mapping, in tests) reads the variables; an empty one counts
  as unset, and a bad one raises `SettingsError` naming the variable, never echoing its value;
- `Settings(field=value, ...)` takes keyword arguments and nothing else: the process environment is
  never consulted, so a test building settings is not changed by a BATON_API_KEYS set on its machine.

A field whose type is itself a settings class (a nested group, such as the worker's LLM endpoint)
is read from the same variables by `from_env`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, Self

from pydantic import Field, PositiveInt, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from plumbing.logs import LogFormat
from plumbing.tracing import TracingMode
from protocol.codec import DEFAULT_MAX_MESSAGE_BYTES
from protocol.names import check_service_name

DEFAULT_RABBITMQ_URL: Final[str] = "amqp://guest:guest@localhost:5672/"
DEFAULT_REDIS_URL: Final[str] = "redis://localhost:6379/0"
DEFAULT_LOG_LEVEL: Final[str] = "INFO"
# Text by default: scripts/up.sh writes each process's log to a file a person reads; deployments that
# ship logs to a collector set BATON_LOG_FORMAT=json.
DEFAULT_LOG_FORMAT: Final[LogFormat] = "text"


class SettingsError(ValueError):
    """An environment variable has a value Baton cannot use."""


class EnvSettings(BaseSettings):
    """A frozen group of settings whose fields name their variables by `validation_alias`."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments only: the environment is read by `from_env`, which passes what it found.
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """The settings named in `env`, defaults for the rest; call it from `__main__` (or a test) only."""
        values: dict[str, Any] = _VariablesSource(cls, env)()
        for name, field in cls.model_fields.items():
            group = field.annotation
            if isinstance(group, type) and issubclass(group, EnvSettings):
                values[name] = group.from_env(env)
        try:
            return cls(**values)
        except ValidationError as exc:
            # `from None`: pydantic's own text would print the refused value, which may be a secret.
            raise SettingsError(_summary(exc)) from None


class _VariablesSource(PydanticBaseSettingsSource):
    """The variables of `env` that a settings class names; empty ones are left out, as unset.

    Not pydantic-settings' EnvSettingsSource: that one reads os.environ only, and decodes dict-typed
    fields as JSON. Reading a given mapping lets `__main__` and the tests take the same path."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = field.validation_alias
        if not isinstance(variable, str):  # a field set by keyword only (or a nested group)
            return None, field_name, False
        # Values stay strings: list-shaped variables are parsed by their field's validator, not as JSON.
        return self._env.get(variable) or None, variable, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, variable, _ = self.get_field_value(field, field_name)
            if value is not None:
                found[variable] = value
        return found


class SharedSettings(EnvSettings):
    """The variables every Baton process reads."""

    rabbitmq_url: str = Field(default=DEFAULT_RABBITMQ_URL, validation_alias="RABBITMQ_URL")
    redis_url: str = Field(default=DEFAULT_REDIS_URL, validation_alias="REDIS_URL")
    max_message_bytes: PositiveInt = Field(
        default=DEFAULT_MAX_MESSAGE_BYTES, validation_alias="BATON_MAX_MESSAGE_BYTES"
    )
    log_level: str = Field(default=DEFAULT_LOG_LEVEL, validation_alias="BATON_LOG_LEVEL")
    log_format: LogFormat = Field(default=DEFAULT_LOG_FORMAT, validation_alias="BATON_LOG_FORMAT")
    # OpenTelemetry spans (plumbing.tracing): off, printed (console) or sent over OTLP/HTTP, where the
    # standard OTEL_EXPORTER_OTLP_* and OTEL_SERVICE_NAME variables, read by the OpenTelemetry SDK, apply.
    tracing: TracingMode = Field(default="off", validation_alias="BATON_TRACING")
    # token -> the one service it speaks for: the orchestrator lets it act for that service, a worker
    # sends its own service's token.
    service_tokens: Mapping[str, str] | None = Field(default=None, validation_alias="BATON_SERVICE_TOKEN", repr=False)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        name = value.strip().upper()
        if name not in logging.getLevelNamesMapping():
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return name

    @field_validator("log_format", "tracing", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("service_tokens", mode="before")
    @classmethod
    def _parse_service_tokens(cls, value: Any) -> Any:
        """`service:token,service:token` -> {token: service}: each token speaks for one service only."""
        if isinstance(value, str):
            return secrets_by_owner(value, "service:token", check_service_name, "services")
        return value


def secrets_by_owner(raw: str, shape: str, check_owner: Callable[[str], str], owners: str) -> dict[str, str]:
    """`owner:secret,...` -> {secret: owner}, each owner name checked, no secret given to two owners.

    Read by the orchestrator (API keys, service tokens) and by workers (their own service's token).
    Messages leave out the variable: `from_env` puts its name in front."""
    found: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        owner, sep, secret = item.partition(":")
        if not sep or not secret:
            # The entry is not echoed: it may be a secret without its owner.
            raise ValueError(f"entries are {shape}")
        check_owner(owner)  # its ValueError names the owner, never the secret
        if found.get(secret, owner) != owner:
            raise ValueError(f"one secret is given to two {owners}")
        found[secret] = owner
    return found


def _summary(exc: ValidationError) -> str:
    """One line naming each refused variable and why, without its value."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        variable = ".".join(str(part) for part in error["loc"])
        # A validator's own ValueError says what is wrong; pydantic's msg would prefix it with "Value error, ".
        reason = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
        # A check across variables (a model validator) has no location: its message names them.
        parts.append(f"{variable}: {reason}" if variable else reason)
    return "; ".join(parts)
