"""The peer: a Celery 5 app with the same no-op task, on the same RabbitMQ, results in Redis.

    celery -A tests.bench.celery_app worker --pool=threads -c 16 -Q <queue>

Configured from the environment by tests/bench/celery_peer.py: BENCH_CELERY_BROKER (the RabbitMQ
URL), BENCH_CELERY_BACKEND (the Redis URL; result keys are prefixed with the queue name, see
`result_key_prefix`), BENCH_CELERY_QUEUE (a queue name unique to the run) and BENCH_CELERY_READY_FILE
(written when the worker is ready). Celery needs its app at module level for `celery -A`; building it
reads only those variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_ready
from kombu import Exchange, Queue


def result_key_prefix(queue: str) -> str:
    """What every result key of the run starts with: the peer deletes these keys, and only these."""
    return f"{queue}:"


def make_app(broker: str, backend: str, queue: str) -> Celery:
    app = Celery("baton_bench", broker=broker, backend=backend)
    app.conf.update(
        # The same guarantees as Baton: confirmed persistent publishes, ack after the outcome is stored.
        broker_transport_options={"confirm_publish": True},
        task_acks_late=True,
        task_default_delivery_mode="persistent",
        # The same wire format and queue shape (a priority queue) as Baton.
        task_serializer="msgpack",
        result_serializer="msgpack",
        accept_content=["msgpack"],
        task_queues=[
            Queue(queue, Exchange(queue, type="direct"), routing_key=queue, queue_arguments={"x-max-priority": 10})
        ],
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        # Nothing the benchmark does not use: no events, no remote control (no pidbox queues to clean up).
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        result_backend_transport_options={"global_keyprefix": result_key_prefix(queue)},
    )
    return app


app = make_app(
    os.environ.get("BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    os.environ.get("BENCH_CELERY_BACKEND", "redis://127.0.0.1:6379/0"),
    os.environ.get("BENCH_CELERY_QUEUE", "bench-celery"),
)


@app.task(name="bench.noop")
def noop(n: int) -> dict[str, int]:
    return {"n": n}


@worker_ready.connect
def _announce_ready(**_: Any) -> None:
    ready_file = os.environ.get("BENCH_CELERY_READY_FILE")
    if ready_file:
        Path(ready_file).write_text("ready")
