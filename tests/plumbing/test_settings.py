"""plumbing.settings: variables read by `from_env` only, empty ones unset, refusals that name the variable."""

from __future__ import annotations

import pytest

from plumbing.settings import SettingsError, SharedSettings


def test_defaults_and_variables() -> None:
    defaults = SharedSettings.from_env({})
    assert (defaults.rabbitmq_url, defaults.redis_url) == (
        "amqp://guest:guest@localhost:5672/",
        "redis://localhost:6379/0",
    )
    assert (defaults.max_message_bytes, defaults.log_level) == (4 * 1024 * 1024, "INFO")
    settings = SharedSettings.from_env(
        {
            "RABBITMQ_URL": "amqp://x/",
            "REDIS_URL": "redis://y/1",
            "BATON_MAX_MESSAGE_BYTES": "1024",
            "BATON_LOG_LEVEL": "debug",
        }
    )
    assert (settings.rabbitmq_url, settings.redis_url) == ("amqp://x/", "redis://y/1")
    assert (settings.max_message_bytes, settings.log_level) == (1024, "DEBUG")


def test_an_empty_variable_is_unset() -> None:
    assert SharedSettings.from_env({"RABBITMQ_URL": "", "BATON_MAX_MESSAGE_BYTES": ""}) == SharedSettings()


def test_keyword_arguments_never_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_URL", "amqp://from-the-environment/")
    monkeypatch.setenv("BATON_LOG_LEVEL", "nonsense")
    settings = SharedSettings(redis_url="redis://given/0")
    assert (settings.rabbitmq_url, settings.redis_url, settings.log_level) == (
        "amqp://guest:guest@localhost:5672/",
        "redis://given/0",
        "INFO",
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"BATON_MAX_MESSAGE_BYTES": "lots-s3cret"}, "BATON_MAX_MESSAGE_BYTES"),
        ({"BATON_MAX_MESSAGE_BYTES": "0"}, "BATON_MAX_MESSAGE_BYTES"),
        ({"BATON_LOG_LEVEL": "s3cret"}, "BATON_LOG_LEVEL"),
    ],
)
def test_a_refusal_names_the_variable_on_one_line_without_its_value(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as refused:
        SharedSettings.from_env(env)
    message = str(refused.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
    assert "s3cret" not in message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
