"""The flow-control settings and the rate notation they share (no services needed)."""

from __future__ import annotations

import pytest

from orchestrator.app import LIVE, create_app
from orchestrator.rates import Rate, TokenBucket, parse_rate
from orchestrator.settings import DEFAULT_JOB_QUOTA, OrchestratorSettings
from plumbing.settings import SettingsError


@pytest.mark.parametrize(
    ("text", "rate"),
    [("200/s:2000", Rate(200.0, 2000)), ("120/m:10", Rate(2.0, 10)), (" 36/H:1 ", Rate(0.01, 1)), ("off", None)],
)
def test_rates_read_as_count_per_unit_and_burst(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["200", "200/s", "200/d:5", "x/s:5", "0/s:5", "5/s:0", "-1/s:5", "inf/s:5", "5/s:1.5"])
def test_a_bad_rate_is_refused_with_the_shape(text: str) -> None:
    with pytest.raises(ValueError, match="200/s:2000"):
        parse_rate(text)


def test_an_in_memory_bucket_holds_its_burst_and_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(Rate(2.0, 3), clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.4  # 0.8 of a token
    assert not bucket.take()
    now[0] = 0.5
    assert bucket.take() and not bucket.take()
    now[0] = 100.0  # never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_quota_and_websocket_variables() -> None:
    settings = OrchestratorSettings.from_env(
        {
            "BATON_API_KEYS": "acme:k1,beta:k2,gamma:k3",
            "BATON_JOB_QUOTA": "50/s:100",
            "BATON_TENANT_JOB_QUOTAS": "acme:10/m:5, beta:off",
            "BATON_WS_MAX_CONNECTIONS": "300",
            "BATON_WS_MAX_PER_TENANT": "30",
            "BATON_WS_MAX_UNAUTHENTICATED": "20",
            "BATON_WS_AUTH_TIMEOUT_SECONDS": "2.5",
            "BATON_WS_MESSAGE_RATE": "off",
            "BATON_WS_CLIENT_BUFFER": "50",
            "BATON_ALLOWED_ORIGINS": "https://App.example.com/, http://localhost:3000",
        }
    )
    quotas, sockets = settings.quotas, settings.websockets
    assert quotas.rate_for("acme") == Rate(10 / 60, 5)
    assert quotas.rate_for("beta") is None
    assert quotas.rate_for("gamma") == Rate(50.0, 100)
    assert (sockets.max_connections, sockets.max_per_tenant, sockets.max_unauthenticated) == (300, 30, 20)
    assert sockets.auth_timeout_seconds == 2.5 and sockets.message_rate is None
    assert sockets.client_buffer == 50
    assert sockets.allowed_origins == {"https://app.example.com", "http://localhost:3000"}
    defaults = OrchestratorSettings.from_env({})
    assert defaults.quotas.rate_for("dev") == DEFAULT_JOB_QUOTA
    assert defaults.websockets.client_buffer == 10_000
    assert defaults.websockets.allowed_origins is None  # the request's own host


def test_quotas_can_be_turned_off() -> None:
    settings = OrchestratorSettings.from_env({"BATON_JOB_QUOTA": "off", "BATON_WS_MESSAGE_RATE": "off"})
    assert settings.quotas.rate_for("dev") is None and settings.websockets.message_rate is None


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"BATON_JOB_QUOTA": "lots"}, "BATON_JOB_QUOTA: a rate is"),
        ({"BATON_API_KEYS": "acme:k", "BATON_TENANT_JOB_QUOTAS": "acme"}, "BATON_TENANT_JOB_QUOTAS: entries are"),
        ({"BATON_API_KEYS": "acme:k", "BATON_TENANT_JOB_QUOTAS": "acme:1/s:1,acme:off"}, "given twice"),
        ({"BATON_API_KEYS": "acme:k", "BATON_TENANT_JOB_QUOTAS": "acmee:1/s:1"}, "has: ['acmee']"),
        ({"BATON_TENANT_JOB_QUOTAS": "acme:1/s:1"}, "no key of BATON_API_KEYS has"),  # only `dev` without keys
        ({"BATON_WS_MAX_PER_TENANT": "0"}, "BATON_WS_MAX_PER_TENANT"),
        ({"BATON_WS_CLIENT_BUFFER": "none"}, "BATON_WS_CLIENT_BUFFER"),
        ({"BATON_WS_MESSAGE_RATE": "10/s"}, "BATON_WS_MESSAGE_RATE: a rate is"),
        ({"BATON_ALLOWED_ORIGINS": "app.example.com"}, "BATON_ALLOWED_ORIGINS: an origin is scheme://host"),
        ({"BATON_ALLOWED_ORIGINS": "https://app.example.com/page"}, "BATON_ALLOWED_ORIGINS"),
    ],
)
def test_bad_limits_stop_the_start_with_a_clear_message(variables: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        OrchestratorSettings.from_env(variables)
    assert message in str(refused.value)


async def test_the_websocket_client_buffer_reaches_the_hub() -> None:
    app = create_app(OrchestratorSettings.from_env({"BATON_WS_CLIENT_BUFFER": "7"}))
    assert app[LIVE].hub.client_buffer == 7
