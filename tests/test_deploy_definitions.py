"""deploy/rabbitmq: definitions.json matches the topology, and its users' permissions hold on a real broker."""

import importlib.util
import shutil
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import aiormq
import pytest

from protocol.topology import (
    CONTROL_EXCHANGE,
    EVENTS_EXCHANGE,
    ORCHESTRATOR_EVENTS_QUEUE,
    ORCHESTRATOR_QUEUES,
    TASKS_EXCHANGE,
    declare_exchanges,
    declare_queues,
    declare_service,
    service_queues,
    task_queue,
)

DEFINITIONS = Path(__file__).resolve().parent.parent / "deploy" / "rabbitmq"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_definitions", DEFINITIONS / "generate_definitions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_definitions_json_matches_the_topology_module() -> None:
    assert (DEFINITIONS / "definitions.json").read_text() == _generator().render(), (
        "deploy/rabbitmq/definitions.json is stale: run python deploy/rabbitmq/generate_definitions.py"
    )


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def broker_users(rabbitmq_url: str) -> Iterator[dict[str, str]]:
    """The generator's two users, made with uuid names and a password on the test's vhost; deleted after.

    Needs rabbitmqctl for the broker the tests use (the local node, as root)."""
    target = urlsplit(rabbitmq_url)
    if shutil.which("rabbitmqctl") is None or target.hostname not in ("127.0.0.1", "localhost"):
        pytest.skip("needs rabbitmqctl for the broker of RABBITMQ_URL")
    if (target.port or 5672) != 5672:
        pytest.skip("rabbitmqctl manages the local node on port 5672 only")
    vhost = unquote(target.path[1:]) if len(target.path) > 1 else "/"
    password = uuid.uuid4().hex
    urls: dict[str, str] = {}
    made: list[str] = []
    try:
        for role, regexes in _generator().user_permissions().items():
            user = f"{role}-test-{uuid.uuid4().hex[:10]}"
            _rabbitmqctl("add_user", user, password)
            made.append(user)
            _rabbitmqctl("set_permissions", "-p", vhost, user, regexes["configure"], regexes["write"], regexes["read"])
            netloc = f"{quote(user)}:{password}@{target.hostname}:{target.port or 5672}"
            urls[role] = target._replace(netloc=netloc).geturl()
        yield urls
    finally:
        for user in made:
            _rabbitmqctl("delete_user", user)


async def _refused(action: Callable[[aio_pika.abc.AbstractChannel], Awaitable[Any]], url: str) -> bool:
    """Whether the broker refuses the action with 403 (which closes the channel)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        try:
            await action(channel)
        except aiormq.exceptions.ChannelAccessRefused:
            return True
        return False
    finally:
        await connection.close()


async def test_a_worker_user_does_its_work_and_no_more(
    rabbitmq_url: str, broker_users: dict[str, str], unique: str
) -> None:
    service = f"perm-{unique}"
    admin = await aio_pika.connect(rabbitmq_url)
    created_events_queue = False
    try:
        setup = await admin.channel()
        await declare_exchanges(setup)
        try:
            await setup.declare_queue(ORCHESTRATOR_EVENTS_QUEUE, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:  # a vhost no orchestrator ran on: ours to delete
            setup = await admin.channel()
            await declare_queues(setup, ORCHESTRATOR_QUEUES)
            created_events_queue = True

        worker_url = broker_users["baton-worker"]
        worker = await aio_pika.connect(worker_url)
        channel = await worker.channel(publisher_confirms=True)
        await declare_service(channel, service)  # its queues, bound
        events = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        # A routing key no orchestrator applies (not a tenant's): nothing to undo on the shared queue.
        await events.publish(aio_pika.Message(b"{}"), routing_key=f"permission-test.{unique}", mandatory=False)
        tasks = await channel.get_exchange(TASKS_EXCHANGE, ensure=False)
        await tasks.publish(aio_pika.Message(b"child"), routing_key=service, mandatory=True)  # a child task
        queue = await channel.declare_queue(task_queue(service), passive=True)
        assert (await queue.get(no_ack=True)).body == b"child"
        await worker.close()

        async def leave_unacked(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            pass  # were one taken, closing the connection hands it back

        async def consume_orchestrator_events(ch: aio_pika.abc.AbstractChannel) -> None:
            queue = await ch.declare_queue(ORCHESTRATOR_EVENTS_QUEUE, passive=True)
            await queue.consume(leave_unacked, no_ack=False)

        async def broadcast_a_cancel(ch: aio_pika.abc.AbstractChannel) -> None:
            await ch.set_qos(0)  # a round trip after the publish: a refused publish closes the channel first
            control = await ch.get_exchange(CONTROL_EXCHANGE, ensure=False)
            await control.publish(aio_pika.Message(b"{}"), routing_key="")
            await ch.set_qos(0)

        async def copy_every_event(ch: aio_pika.abc.AbstractChannel) -> None:
            queue = await ch.declare_queue(f"baton.snoop-{unique}", exclusive=True, auto_delete=True)
            await queue.bind(EVENTS_EXCHANGE, routing_key="#")

        assert await _refused(consume_orchestrator_events, worker_url)
        assert await _refused(broadcast_a_cancel, worker_url)
        assert await _refused(copy_every_event, worker_url)

        # The orchestrator's user: tasks, cancels, every service's queues.
        orchestrator = await aio_pika.connect(broker_users["baton-orchestrator"])
        channel = await orchestrator.channel(publisher_confirms=True)
        await declare_service(channel, service)
        await (await channel.get_exchange(TASKS_EXCHANGE, ensure=False)).publish(
            aio_pika.Message(b"task"), routing_key=service, mandatory=True
        )
        await (await channel.get_exchange(CONTROL_EXCHANGE, ensure=False)).publish(aio_pika.Message(b"{}"), "")
        queue = await channel.declare_queue(task_queue(service), passive=True)
        assert (await queue.get(no_ack=True)).body == b"task"
        await channel.declare_queue(ORCHESTRATOR_EVENTS_QUEUE, passive=True)
        await orchestrator.close()
    finally:
        cleanup = await admin.channel()
        for spec in service_queues(service):
            await cleanup.queue_delete(spec.name)
        if created_events_queue:
            await cleanup.queue_delete(ORCHESTRATOR_EVENTS_QUEUE)
        await admin.close()
