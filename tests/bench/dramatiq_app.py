"""The second peer: a Dramatiq broker and actor with the same no-op task, on the same RabbitMQ, results in Redis.

    dramatiq tests.bench.dramatiq_app:broker -p 1 -t 16 -Q <queue>

Configured from the environment by tests/bench/dramatiq_peer.py: BENCH_DRAMATIQ_BROKER (the RabbitMQ
URL), BENCH_DRAMATIQ_BACKEND (the Redis URL), BENCH_DRAMATIQ_QUEUE (a queue name unique to the run,
also the results' namespace) and BENCH_DRAMATIQ_READY_FILE (written once the worker has booted).
Dramatiq's CLI needs the broker and its actor at module level; building them reads only those
variables and connects to nothing until the worker starts.
"""

from __future__ import annotations

import os

import dramatiq

from tests.bench.dramatiq_peer import NOOP_ACTOR, make_broker

QUEUE = os.environ.get("BENCH_DRAMATIQ_QUEUE", "bench-dramatiq")
broker = make_broker(
    os.environ.get("BENCH_DRAMATIQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/"),
    os.environ.get("BENCH_DRAMATIQ_BACKEND", "redis://127.0.0.1:6379/0"),
    QUEUE,
    ready_file=os.environ.get("BENCH_DRAMATIQ_READY_FILE"),
)


@dramatiq.actor(broker=broker, actor_name=NOOP_ACTOR, queue_name=QUEUE, store_results=True, max_retries=0)
def noop(n: int) -> dict[str, int]:
    return {"n": n}
