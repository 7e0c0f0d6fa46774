"""Writes deploy/rabbitmq/definitions.json from protocol.topology (run: python deploy/rabbitmq/generate_definitions.py).

Besides the topology, two users with only what each needs (deploy/README.md says what the
regexes can and cannot stop). They have no password: set one with `rabbitmqctl change_password`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from protocol.services import BUILTIN_SERVICES
from protocol.topology import (
    CONTROL_EXCHANGE,
    EVENTS_EXCHANGE,
    EXCHANGES,
    ORCHESTRATOR_EVENTS_QUEUE,
    ORCHESTRATOR_QUEUES,
    QueueSpec,
    service_queues,
)

TARGET = Path(__file__).with_name("definitions.json")
WORKER_USER = "baton-worker"
ORCHESTRATOR_USER = "baton-orchestrator"


def _except(*names: str) -> str:
    """Every `baton.` name but these (RabbitMQ matches permissions with PCRE: lookaheads work)."""
    excluded = "|".join(re.escape(name.removeprefix("baton.")) + "$" for name in names)
    return rf"^baton\.(?!{excluded}).+$"


def user_permissions() -> dict[str, dict[str, str]]:
    """configure / write / read regexes per user, matched against exchange and queue names.

    A worker declares the exchanges and its own queues (baton.<service>, .dead, .retry.<ms>, and
    baton.reply.<id> / baton.control.<id> of its process), consumes them, binds them (write on the
    queue, read on the exchange) and publishes to baton.events, baton.retry, baton.dlx, baton.tasks
    (child tasks) and the default exchange (replies to a calling worker's queue). It may not touch
    the orchestrator's events queue, publish on baton.control, or bind a queue to baton.events
    (which would copy every tenant's events to it).
    """
    return {
        WORKER_USER: {
            "configure": _except(ORCHESTRATOR_EVENTS_QUEUE),
            "write": _except(ORCHESTRATOR_EVENTS_QUEUE, CONTROL_EXCHANGE) + "|^amq\\.default$",
            "read": _except(ORCHESTRATOR_EVENTS_QUEUE, EVENTS_EXCHANGE),
        },
        # Declares every service's queues, publishes tasks and cancels, consumes the events queue,
        # browses dead letters: everything of Baton's, nothing else.
        ORCHESTRATOR_USER: {"configure": r"^baton\..+$", "write": r"^baton\..+$", "read": r"^baton\..+$"},
    }


def definitions() -> dict[str, Any]:
    queues: list[QueueSpec] = [*ORCHESTRATOR_QUEUES]
    for service in BUILTIN_SERVICES:
        queues.extend(service_queues(service))
    return {
        "users": [
            {"name": "guest", "password": "guest", "tags": ["administrator"]},
            *({"name": user, "password_hash": "", "tags": []} for user in user_permissions()),
        ],
        "vhosts": [{"name": "/"}],
        "permissions": [
            {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
            *({"user": user, "vhost": "/", **regexes} for user, regexes in user_permissions().items()),
        ],
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
