"""Settings from the environment and the `python -m workers` target loader."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plumbing.settings import SettingsError
from workers import ConfigurationError, Worker, WorkerSettings
from workers.__main__ import load_worker
from workers.runtime import WorkerRuntime


def test_settings_from_env() -> None:
    settings = WorkerSettings.from_env(
        {
            "RABBITMQ_URL": "amqp://u:p@broker:5672/",
            "REDIS_URL": "redis://ledger:6379/2",
            "BATON_CONSUMER_TIMEOUT_SECONDS": "7200",
            "BATON_WORKER_CONCURRENCY": "3",
            "BATON_CONNECT_TIMEOUT_SECONDS": "2.5",
            "BATON_SHUTDOWN_GRACE_SECONDS": "12.5",
            "BATON_HEARTBEAT_SECONDS": "2",
            "BATON_HTTP_RETRIES": "0",
            "LLM_BASE_URL": "http://llm:8000/v1/",
            "LLM_API_KEY": "secret",
            "LLM_MODEL": "tiny",
        }
    )
    assert settings.rabbitmq_url == "amqp://u:p@broker:5672/"
    assert (settings.redis_url, settings.consumer_timeout_seconds) == ("redis://ledger:6379/2", 7200.0)
    assert (settings.concurrency, settings.prefetch, settings.http_retries) == (3, None, 0)
    assert (settings.shutdown_grace_seconds, settings.heartbeat_seconds) == (12.5, 2.0)
    assert settings.connect_timeout_seconds == 2.5
    assert (settings.llm.base_url, settings.llm.api_key, settings.llm.model) == ("http://llm:8000/v1", "secret", "tiny")
    assert "secret" not in repr(settings)


def test_defaults_and_bad_values() -> None:
    defaults = WorkerSettings.from_env({})
    assert (defaults.shutdown_grace_seconds, defaults.heartbeat_seconds, defaults.llm.base_url) == (30.0, 5.0, None)
    assert defaults.connect_timeout_seconds == 10.0
    with pytest.raises(SettingsError, match="BATON_SHUTDOWN_GRACE_SECONDS"):
        WorkerSettings.from_env({"BATON_SHUTDOWN_GRACE_SECONDS": "soon"})
    with pytest.raises(SettingsError, match="BATON_WORKER_CONCURRENCY"):
        WorkerSettings.from_env({"BATON_WORKER_CONCURRENCY": "0"})


def test_the_orchestrator_url_and_the_services_own_token() -> None:
    settings = WorkerSettings.from_env(
        {"BATON_ORCHESTRATOR_URL": "https://baton.example/ ", "BATON_SERVICE_TOKEN": "ocr:tok-1, query:tok-2"}
    )
    assert settings.orchestrator_url == "https://baton.example"
    assert (settings.service_token("ocr"), settings.service_token("query"), settings.service_token("x")) == (
        "tok-1",
        "tok-2",
        None,
    )
    assert "tok-" not in repr(settings)
    defaults = WorkerSettings.from_env({})
    assert (defaults.orchestrator_url, defaults.service_token("ocr")) == ("http://localhost:8000", None)
    with pytest.raises(SettingsError, match=r"BATON_ORCHESTRATOR_URL: .*http"):
        WorkerSettings.from_env({"BATON_ORCHESTRATOR_URL": "localhost:8000"})
    with pytest.raises(SettingsError, match="BATON_SERVICE_TOKEN: entries are service:token") as refused:
        WorkerSettings.from_env({"BATON_SERVICE_TOKEN": "just-a-token"})
    assert "just-a-token" not in str(refused.value)


def test_tenant_fairness_settings() -> None:
    settings = WorkerSettings.from_env(
        {
            "BATON_TENANT_WEIGHTS": "big:3, small:1,*:2",
            "BATON_TENANT_MAX_RUNNING": "big:5",
            "BATON_LANE_REFRESH_SECONDS": "5",
        }
    )
    assert settings.tenant_weights == {"big": 3, "small": 1, "*": 2}
    assert (settings.tenant_max_running, settings.lane_refresh_seconds) == ({"big": 5}, 5.0)
    defaults = WorkerSettings.from_env({})
    assert (defaults.tenant_weights, defaults.tenant_max_running, defaults.lane_refresh_seconds) == ({}, {}, 15.0)
    for variable, value in (
        ("BATON_TENANT_WEIGHTS", "big"),
        ("BATON_TENANT_WEIGHTS", "big:0"),
        ("BATON_TENANT_WEIGHTS", "a.b:1"),
        ("BATON_TENANT_MAX_RUNNING", "big:1,big:2"),
        ("BATON_TENANT_MAX_RUNNING", "big:many"),
    ):
        with pytest.raises(SettingsError, match=variable):
            WorkerSettings.from_env({variable: value})


@pytest.mark.parametrize(("variable", "value"), [("BATON_WORKER_CONCURRENCY", "0"), ("BATON_LOG_LEVEL", "nonsense")])
def test_a_bad_variable_stops_the_worker_with_status_2(variable: str, value: str) -> None:
    env = {name: found for name, found in os.environ.items() if not name.startswith(("BATON_", "LLM_"))}
    result = subprocess.run(
        [sys.executable, "-m", "workers", "query"],
        cwd=Path(__file__).resolve().parents[2],
        env={**env, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"workers: {variable}: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_concurrency_override_scales_prefetch() -> None:
    worker = Worker("svc", concurrency=20, prefetch=40)

    @worker.handler("job")
    async def job(payload: dict[str, object], ctx: object) -> None:
        return None

    runtime = WorkerRuntime(worker, WorkerSettings(concurrency=5))
    assert (runtime.concurrency, runtime.prefetch) == (5, 10)
    assert WorkerRuntime(worker, WorkerSettings()).prefetch == 40


@pytest.mark.parametrize(
    ("name", "job_type", "concurrency"),
    [
        ("query", "llm_request", 10),
        ("embedding", "embedding_request", 20),
        ("ingestion", "document_processing", 5),
        ("agent", "agent_execution", 10),
    ],
)
def test_builtin_targets(name: str, job_type: str, concurrency: int) -> None:
    worker = load_worker(name)
    assert (worker.service, worker.job_types, worker.concurrency) == (name, [job_type], concurrency)


def test_module_attr_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_TEST_SERVICE", "from-factory")
    assert load_worker("tests.workers.sample_app:build").service == "from-factory"
    assert load_worker("workers.services.embedding:worker").service == "embedding"
    with pytest.raises(ConfigurationError, match="not a built-in"):
        load_worker("nonsense")
    with pytest.raises(ConfigurationError, match="cannot import"):
        load_worker("no.such.module:worker")
    with pytest.raises(ConfigurationError, match="no attribute"):
        load_worker("workers.services.embedding:missing")
    with pytest.raises(ConfigurationError, match=r"not a workers\.Worker"):
        load_worker("workers.services.embedding:MAX_TEXTS")
