"""The entrypoints configure logging and tracing from BATON_LOG_FORMAT and BATON_TRACING, and refuse bad values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plumbing.settings import SettingsError, SharedSettings
from plumbing.tracing import build_tracing

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], **variables: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("BATON_", "LLM_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**env, **variables}, capture_output=True, text=True, timeout=60
    )


def test_the_defaults_are_text_logs_and_no_tracing() -> None:
    settings = SharedSettings.from_env({})
    assert (settings.log_format, settings.tracing) == ("text", "off")
    assert SharedSettings.from_env({"BATON_LOG_FORMAT": " JSON ", "BATON_TRACING": "OTLP"}).tracing == "otlp"


@pytest.mark.parametrize(("variable", "value"), [("BATON_LOG_FORMAT", "xml"), ("BATON_TRACING", "jaeger")])
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}: Input should be "):
        SharedSettings.from_env({variable: value})


@pytest.mark.parametrize("module", ["workers", "orchestrator"])
def test_a_bad_tracing_value_stops_either_service_with_status_2(module: str) -> None:
    done = run(["-m", module, *(["query"] if module == "workers" else [])], BATON_TRACING="zipkin")
    assert done.returncode == 2
    assert done.stderr.startswith(f"{module}: BATON_TRACING: ") and "Traceback" not in done.stderr


def test_the_worker_entrypoint_logs_json_lines_when_asked() -> None:
    done = run(["-m", "workers", "no_such_service"], BATON_LOG_FORMAT="json")
    assert done.returncode == 2
    [entry] = [json.loads(line) for line in done.stderr.splitlines()]
    assert entry["level"] == "ERROR" and entry["logger"] == "workers"
    assert "'no_such_service' is not a built-in service" in entry["message"]


def test_console_tracing_builds_the_opentelemetry_tracing() -> None:
    tracing = build_tracing("console", "baton-test")
    try:
        assert tracing.enabled
        headers: dict[str, str] = {}
        with tracing.span("outer", kind="server"):
            tracing.inject(headers)
        assert headers["traceparent"].startswith("00-")
        child: dict[str, str] = {}
        # An AMQP table may hand the header back as bytes.
        as_received = {"traceparent": headers["traceparent"].encode(), "x-baton-attempts": 1}
        with tracing.span("remote child", kind="consumer", parent=as_received), tracing.span("inner"):
            tracing.inject(child)
        # The same trace id, another span id.
        assert child["traceparent"].split("-")[1] == headers["traceparent"].split("-")[1]
        assert child["traceparent"].split("-")[2] != headers["traceparent"].split("-")[2]
    finally:
        tracing.shutdown()
