import pytest

from protocol import Settings, SettingsError
from protocol.settings import parse_api_keys
from protocol.topology import (
    EXCHANGES,
    RETRY_DELAY_TIERS_MS,
    dead_letter_queue,
    event_routing_key,
    retry_queue,
    retry_tier,
    service_queues,
    system_routing_key,
    task_queue,
)


def test_service_queue_is_a_priority_queue_that_dead_letters() -> None:
    work, dead, *_ = service_queues("query")
    assert work.name == task_queue("query") == "baton.query"
    assert work.arguments["x-max-priority"] == 10
    assert work.arguments["x-dead-letter-exchange"] == "baton.dlx"
    assert work.arguments["x-dead-letter-routing-key"] == "query"
    assert dead.name == dead_letter_queue("query") == "baton.query.dead"
    assert [(b.exchange, b.routing_key) for b in dead.bindings] == [("baton.dlx", "query")]


def test_retry_delay_queues_dead_letter_back_to_the_work_queue() -> None:
    delays = service_queues("query")[2:]
    assert len(delays) == len(RETRY_DELAY_TIERS_MS)
    for spec, delay_ms in zip(delays, RETRY_DELAY_TIERS_MS, strict=True):
        assert spec.name == retry_queue("query", delay_ms) == f"baton.query.retry.{delay_ms}"
        assert spec.arguments["x-message-ttl"] == delay_ms
        assert spec.arguments["x-dead-letter-exchange"] == "baton.tasks"
        assert spec.arguments["x-dead-letter-routing-key"] == "query"
        assert [(b.exchange, b.routing_key) for b in spec.bindings] == [("baton.retry", f"query.{delay_ms}")]


@pytest.mark.parametrize(("seconds", "tier"), [(0, 100), (0.3, 250), (0.8, 1000), (4, 5000), (7000, 1_800_000)])
def test_retry_tier_is_the_closest_delay(seconds: float, tier: int) -> None:
    assert retry_tier(seconds) == tier


def test_exchange_kinds() -> None:
    assert {e.name: e.kind for e in EXCHANGES} == {
        "baton.tasks": "direct",
        "baton.retry": "direct",
        "baton.dlx": "direct",
        "baton.events": "topic",
        "baton.control": "fanout",
    }


def test_routing_keys() -> None:
    assert event_routing_key("acme", "query", "task_completed") == "acme.query.task_completed"
    assert system_routing_key("query", "worker_heartbeat") == "_system.query.worker_heartbeat"
    with pytest.raises(ValueError):
        event_routing_key("a.b", "query", "x")
    with pytest.raises(ValueError):
        task_queue("Bad.Name")


def test_settings_from_env() -> None:
    settings = Settings.from_env(
        {"RABBITMQ_URL": "amqp://x/", "ORCHESTRATOR_PORT": "9000", "BATON_API_KEYS": "acme:k1, beta:k2"}
    )
    assert settings.rabbitmq_url == "amqp://x/"
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.orchestrator_port == 9000
    assert settings.api_keys == {"k1": "acme", "k2": "beta"}
    assert Settings.from_env({}).api_keys is None


@pytest.mark.parametrize("raw", ["acme", "acme:", "a.b:k", "acme:k,beta:k"])
def test_bad_api_keys_are_refused(raw: str) -> None:
    with pytest.raises(SettingsError):
        parse_api_keys(raw)


def test_bad_port_is_refused() -> None:
    with pytest.raises(SettingsError, match="ORCHESTRATOR_PORT"):
        Settings.from_env({"ORCHESTRATOR_PORT": "eighty"})


def test_service_tokens_are_scoped_to_one_service() -> None:
    settings = Settings.from_env({"BATON_SERVICE_TOKEN": "ocr:tok-1, query:tok-2"})
    assert settings.service_tokens == {"tok-1": "ocr", "tok-2": "query"}
    for bad in ("s3cret", "ocr:", "Not A Service:s3cret", "ocr:s3cret,query:s3cret"):
        with pytest.raises(SettingsError) as refused:
            Settings.from_env({"BATON_SERVICE_TOKEN": bad})
        assert "BATON_SERVICE_TOKEN" in str(refused.value)
        assert "s3cret" not in str(refused.value)  # a refusal never prints a secret


def test_orchestrator_host_defaults_to_loopback() -> None:
    assert Settings.from_env({}).orchestrator_host == "127.0.0.1"
    assert Settings.from_env({"ORCHESTRATOR_HOST": "0.0.0.0"}).orchestrator_host == "0.0.0.0"
