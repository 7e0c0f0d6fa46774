"""A worker that declares workflows announces them when it starts, after its heartbeat; one that
declares none announces nothing.

Test orchestrators of other tests consume baton.events and store what these announce in the shared
Redis: the workflow ids are the test's own and are removed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel

from orchestrator.workflows.declared import DECLARED_KEY
from protocol.control import WORKFLOWS_KIND, WorkflowAnnouncement
from protocol.topology import system_routing_key
from tests.workers.helpers import CODECS, Tap, running
from workers import TaskContext, Worker, step
from workers.runtime.announcer import ANNOUNCE_EVERY_BEATS


async def echo(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return payload


@pytest.fixture
async def workflow_ids(redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Callable[[str], str]]:
    made: list[str] = []

    def make(label: str) -> str:
        made.append(f"{label}-{unique}")
        return made[-1]

    yield make
    await redis_client.hdel(DECLARED_KEY, *made)


async def test_the_runtime_announces_declared_workflows_after_its_first_heartbeat(
    rabbitmq_url: str, channel: AbstractChannel, service: str, workflow_ids: Callable[[str], str]
) -> None:
    worker = Worker(service)
    worker.handler("echo_request")(echo)
    echo_twice = workflow_ids("echo_twice")
    worker.workflow(echo_twice, name="Echo twice", steps=[step("one", "echo_request"), step("two", "echo_request")])
    tap = await Tap.open(channel, f"_system.{service}.*")
    async with running(worker, rabbitmq_url) as runtime:
        first = await tap.next_message()
        second = await tap.next_message()
    assert first.routing_key == system_routing_key(service, "worker_heartbeat")
    assert second.routing_key == system_routing_key(service, WORKFLOWS_KIND)
    announcement = CODECS.decode(WorkflowAnnouncement, second.body, second.content_type)
    assert (announcement.service, announcement.worker_id) == (service, runtime.worker_id)
    assert [(w.workflow_id, w.definition) for w in announcement.workflows] == [
        (echo_twice, worker.workflows[echo_twice].definition())
    ]


async def test_a_worker_without_workflows_announces_none(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    worker = Worker(service)
    worker.handler("echo_request")(echo)
    tap = await Tap.open(channel, system_routing_key(service, WORKFLOWS_KIND))
    async with running(worker, rabbitmq_url):
        with pytest.raises(TimeoutError):
            await tap.next_message(within=0.5)


async def test_declared_workflows_are_announced_again_every_few_heartbeats(
    rabbitmq_url: str, channel: AbstractChannel, service: str, workflow_ids: Callable[[str], str]
) -> None:
    worker = Worker(service)
    worker.handler("echo_request")(echo)
    worker.workflow(workflow_ids("echo_once"), name="Echo once", steps=[step("one", "echo_request")])
    tap = await Tap.open(channel, system_routing_key(service, WORKFLOWS_KIND))
    async with running(worker, rabbitmq_url, heartbeat_seconds=0.05):
        await tap.next_message()
        await tap.next_message(within=ANNOUNCE_EVERY_BEATS * 0.05 + 5.0)  # one more after that many beats
