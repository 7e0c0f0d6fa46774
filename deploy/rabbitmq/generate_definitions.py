"""Writes deploy/rabbitmq/definitions.json from protocol.topology (run: python deploy/rabbitmq/generate_definitions.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocol.services import BUILTIN_SERVICES
from protocol.topology import EXCHANGES, ORCHESTRATOR_QUEUES, QueueSpec, service_queues

TARGET = Path(__file__).with_name("definitions.json")


def definitions() -> dict[str, Any]:
    queues: list[QueueSpec] = [*ORCHESTRATOR_QUEUES]
    for service in BUILTIN_SERVICES:
        queues.extend(service_queues(service))
    return {
        "users": [{"name": "guest", "password": "guest", "tags": ["administrator"]}],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
        "exchanges": [
            {
                "name": e.name,
                "vhost": "/",
                "type": e.kind,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for e in EXCHANGES
        ],
        "queues": [
            {"name": q.name, "vhost": "/", "durable": True, "auto_delete": False, "arguments": q.arguments}
            for q in queues
        ],
        "bindings": [
            {
                "source": b.exchange,
                "vhost": "/",
                "destination": q.name,
                "destination_type": "queue",
                "routing_key": b.routing_key,
                "arguments": {},
            }
            for q in queues
            for b in q.bindings
        ],
    }


def render() -> str:
    return json.dumps(definitions(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render())
