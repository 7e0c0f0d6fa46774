"""The live side of the real app (create_app): startup, an event end to end, shutdown with GOING_AWAY.

This app consumes the shared baton.orchestrator.events queue like any orchestrator replica, so
the event below may be applied by another replica running meanwhile; either way it reaches this
replica's client through the shared update channel, which is what the design promises.
"""

from __future__ import annotations

import json

import aio_pika
from aiohttp import WSCloseCode, WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.app import LIVE, create_app
from orchestrator.auth import Authenticator
from orchestrator.settings import OrchestratorSettings
from protocol.codec import CodecSet
from protocol.events import EventType
from protocol.topology import EVENTS_EXCHANGE, event_routing_key
from tests.records import event_for, make_record


async def test_live_state_end_to_end(rabbitmq_url: str, redis_url: str, tenant: str, unique: str) -> None:
    codecs = CodecSet()
    key = f"key-{unique}"
    app = create_app(
        OrchestratorSettings(rabbitmq_url=rabbitmq_url, redis_url=redis_url),
        authenticator=Authenticator({key: tenant}, admin_key=None),
    )
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        live = app[LIVE]
        await live.registry.ping()
        record = make_record(tenant)
        await live.registry.create(record)
        ws = await client.ws_connect(f"/ws/jobs/{record.job_id}", headers={"Authorization": f"Bearer {key}"})
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "connection_established"
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "job_snapshot"

        event = event_for(record, EventType.TASK_COMPLETED, 1, result={"n": 1})
        connection = await aio_pika.connect_robust(
            rabbitmq_url, client_properties={"connection_name": f"test-live-{unique}"}
        )
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(EVENTS_EXCHANGE)
            message = aio_pika.Message(codecs.encode(event), content_type=codecs.default.content_type)
            await exchange.publish(message, routing_key=event_routing_key(tenant, "query", "task_completed"))
        update = json.loads((await ws.receive(timeout=10)).data)
        assert update["event"] == "task_completed" and update["seq"] == 2 and update["data"] == {"result": {"n": 1}}

        await client.server.close()  # on_shutdown, then the cleanup context unwinds
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE and msg.data == WSCloseCode.GOING_AWAY
    finally:
        await client.close()
