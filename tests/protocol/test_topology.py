import pytest

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
