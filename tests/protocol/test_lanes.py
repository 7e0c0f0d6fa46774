"""Tenant lanes in the topology, the Redis set that lists them and the lane_opened broadcast (protocol v1 additions)."""

from __future__ import annotations

import pytest

from protocol.codec import JSON, MSGPACK, CodecSet
from protocol.control import CancelCommand, LaneOpened
from protocol.errors import DecodeError
from protocol.lanes import lanes_key
from protocol.topology import (
    lane_queue,
    lane_queue_spec,
    lane_routing_key,
    retry_queue,
    service_queues,
    task_queue,
)

CODECS = CodecSet()


def test_a_lane_is_a_work_queue_like_its_services_bound_under_its_own_key() -> None:
    lane = lane_queue_spec("query", "acme")
    assert lane.name == lane_queue("query", "acme") == "baton.query.tenant.acme"
    assert lane.arguments == service_queues("query")[0].arguments  # priorities; dead letters under "query"
    assert "x-expires" not in lane.arguments  # an expiring queue would drop what it holds
    assert [(b.exchange, b.routing_key) for b in lane.bindings] == [("baton.tasks", "query.tenant.acme")]
    assert lane_routing_key("query", "acme") == "query.tenant.acme"


def test_the_longest_lane_name_fits_amqp() -> None:
    name = lane_queue("s" * 63, "T" * 64)
    assert len(name.encode()) == 141 <= 255


def test_lane_names_never_meet_another_queue_or_each_other() -> None:
    # Neither part holds a dot: a tenant called "dead" or "retry" cannot pose as another queue.
    assert lane_queue("query", "dead") not in {q.name for q in service_queues("query")}
    assert lane_queue("query", "retry") != retry_queue("query", 100)
    assert lane_queue("a", "b") != lane_queue("a-tenant", "b")
    assert lane_routing_key("query", "acme") != "query"
    for service, tenant in (("query", "a.b"), ("query", "a*"), ("Query", "acme"), ("query", "")):
        with pytest.raises(ValueError):
            lane_queue(service, tenant)
    assert lane_queue("query", "Acme") != lane_queue("query", "acme")  # tenant ids are case-sensitive
    assert task_queue("query") == "baton.query"


def test_lanes_key() -> None:
    assert lanes_key("query") == "baton:lanes:query"
    with pytest.raises(ValueError):
        lanes_key("a:b")


@pytest.mark.parametrize("content_type", [MSGPACK, JSON])
def test_lane_opened_round_trips_and_a_worker_that_knows_only_cancels_drops_it(content_type: str) -> None:
    opened = LaneOpened(service="query", tenant_id="acme")
    body = CODECS.encode(opened, CODECS.for_content_type(content_type))
    assert CODECS.decode(LaneOpened, body, content_type) == opened
    with pytest.raises(DecodeError):
        CODECS.decode(CancelCommand, body, content_type)
