"""orchestrator.settings and `python -m orchestrator`: its variables, their refusals, the log level."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import orchestrator.__main__ as entry
from orchestrator.settings import OrchestratorSettings
from plumbing.settings import SettingsError

ROOT = Path(__file__).resolve().parents[2]


def test_settings_from_env() -> None:
    settings = OrchestratorSettings.from_env(
        {"RABBITMQ_URL": "amqp://x/", "ORCHESTRATOR_PORT": "9000", "BATON_API_KEYS": "acme:k1, beta:k2"}
    )
    assert settings.rabbitmq_url == "amqp://x/"
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.orchestrator_port == 9000
    assert settings.api_keys == {"k1": "acme", "k2": "beta"}
    assert OrchestratorSettings.from_env({}).api_keys is None


@pytest.mark.parametrize("raw", ["acme", "acme:", "a.b:k", "acme:k,beta:k"])
def test_bad_api_keys_are_refused(raw: str) -> None:
    with pytest.raises(SettingsError):
        OrchestratorSettings.from_env({"BATON_API_KEYS": raw})


def test_bad_port_is_refused() -> None:
    with pytest.raises(SettingsError, match="ORCHESTRATOR_PORT"):
        OrchestratorSettings.from_env({"ORCHESTRATOR_PORT": "eighty"})


def test_event_history_length() -> None:
    assert OrchestratorSettings.from_env({}).event_history_max == 500
    assert OrchestratorSettings.from_env({"BATON_EVENT_HISTORY_MAX": "20"}).event_history_max == 20
    for bad in ("0", "-1", "10001", "many"):
        with pytest.raises(SettingsError, match="BATON_EVENT_HISTORY_MAX"):
            OrchestratorSettings.from_env({"BATON_EVENT_HISTORY_MAX": bad})


def test_service_tokens_are_scoped_to_one_service() -> None:
    settings = OrchestratorSettings.from_env({"BATON_SERVICE_TOKEN": "ocr:tok-1, query:tok-2"})
    assert settings.service_tokens == {"tok-1": "ocr", "tok-2": "query"}
    for bad in ("s3cret", "ocr:", "Not A Service:s3cret", "ocr:s3cret,query:s3cret"):
        with pytest.raises(SettingsError) as refused:
            OrchestratorSettings.from_env({"BATON_SERVICE_TOKEN": bad})
        assert "BATON_SERVICE_TOKEN" in str(refused.value)
        assert "s3cret" not in str(refused.value)  # a refusal never prints a secret


def test_orchestrator_host_defaults_to_loopback() -> None:
    assert OrchestratorSettings.from_env({}).orchestrator_host == "127.0.0.1"
    assert OrchestratorSettings.from_env({"ORCHESTRATOR_HOST": "0.0.0.0"}).orchestrator_host == "0.0.0.0"


def test_sweeper_variables_are_read_with_the_rest() -> None:
    sweeper = OrchestratorSettings.from_env(
        {
            "BATON_SWEEP_INTERVAL_SECONDS": "2.5",
            "BATON_STUCK_RUNNING_SECONDS": "60",
            "BATON_STUCK_QUEUED_SECONDS": "120",
        }
    ).sweeper
    assert (sweeper.interval_seconds, sweeper.running_stale_seconds, sweeper.queued_stale_seconds) == (2.5, 60, 120)
    defaults = OrchestratorSettings.from_env({}).sweeper
    assert (defaults.interval_seconds, defaults.running_stale_seconds, defaults.queued_stale_seconds) == (30, 600, 3600)
    with pytest.raises(SettingsError, match="BATON_STUCK_QUEUED_SECONDS"):
        OrchestratorSettings.from_env({"BATON_STUCK_QUEUED_SECONDS": "nan"})


def test_secrets_stay_out_of_the_repr() -> None:
    settings = OrchestratorSettings.from_env(
        {"BATON_API_KEYS": "acme:s3cret-1", "BATON_ADMIN_KEY": "s3cret-2", "BATON_SERVICE_TOKEN": "ocr:s3cret-3"}
    )
    assert "s3cret" not in repr(settings)


def test_keyword_arguments_never_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_API_KEYS", "acme:k1")
    monkeypatch.setenv("ORCHESTRATOR_PORT", "9000")
    monkeypatch.setenv("BATON_SWEEP_INTERVAL_SECONDS", "1")
    settings = OrchestratorSettings(rabbitmq_url="amqp://x/", redis_url="redis://y/0")
    assert (settings.api_keys, settings.orchestrator_port, settings.sweeper.interval_seconds) == (None, 8000, 30)


def _run_orchestrator(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("BATON_", "ORCHESTRATOR_"))}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=ROOT,
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variables", "named"),
    [({"BATON_LOG_LEVEL": "nonsense"}, "BATON_LOG_LEVEL"), ({"BATON_API_KEYS": "s3cret"}, "BATON_API_KEYS")],
)
def test_a_bad_variable_stops_the_orchestrator_with_status_2(variables: dict[str, str], named: str) -> None:
    result = _run_orchestrator(**variables)
    assert result.returncode == 2
    assert result.stderr.startswith(f"orchestrator: {named}: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize(
    ("args", "variables", "message"),
    [
        (["--processes", "0"], {}, "argument --processes: 1 to 64 processes, not 0\n"),
        (["--processes", "65"], {}, "argument --processes: 1 to 64 processes, not 65\n"),
        (["--processes", "two"], {}, "argument --processes: a whole number of processes, 1 to 64, not 'two'\n"),
        ([], {"ORCHESTRATOR_PROCESSES": "0"}, "orchestrator: ORCHESTRATOR_PROCESSES: "),
        ([], {"ORCHESTRATOR_PROCESSES": "65"}, "orchestrator: ORCHESTRATOR_PROCESSES: "),
    ],
)
def test_a_bad_process_count_exits_2_with_a_clear_message(
    args: list[str], variables: dict[str, str], message: str
) -> None:
    result = _run_orchestrator(*args, **variables)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_the_process_flag_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    groups: list[int] = []

    async def run_group(count: int, host: str, port: int, env: Mapping[str, str]) -> int:
        groups.append(count)
        return 0

    def run_loop(serving: Coroutine[Any, Any, None]) -> int:
        serving.close()
        groups.append(1)
        return 0

    monkeypatch.setattr(entry, "run_group", run_group)
    monkeypatch.setattr(entry, "run_loop", run_loop)
    monkeypatch.setenv("BATON_API_KEYS", "acme:k1")
    monkeypatch.setenv("ORCHESTRATOR_PROCESSES", "3")
    assert entry.main([]) == 0
    assert entry.main(["--processes", "1"]) == 0
    assert entry.main(["--processes", "2"]) == 0
    assert groups == [3, 1, 2]


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    root.setLevel(level)
    root.handlers[:] = handlers


def test_the_orchestrator_applies_baton_log_level(monkeypatch: pytest.MonkeyPatch, root_logger: logging.Logger) -> None:
    def run_loop(serving: Coroutine[Any, Any, None]) -> int:
        serving.close()  # the settings are what this test is about, not serving
        return 0

    monkeypatch.setattr(entry, "run_loop", run_loop)
    monkeypatch.setenv("BATON_API_KEYS", "acme:k1")
    monkeypatch.setenv("BATON_LOG_LEVEL", "debug")  # the root logger starts at WARNING
    assert entry.main([]) == 0
    assert root_logger.level == logging.DEBUG
