"""The limit's worker process: consume an envelope, publish its result event (confirmed), then ack.

    python -m tests.bench.raw_worker <amqp url> <run id> [--prefetch 64]

Started by tests/bench/raw_limit.py after it declared the topology; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aio_pika
import msgpack
from aio_pika.abc import AbstractIncomingMessage

from tests.bench.raw_topology import MSGPACK, RawNames, completed_event, event_routing_key


async def serve(url: str, names: RawNames, prefetch: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch)
        events = await channel.get_exchange(names.events_exchange, ensure=False)
        queue = await channel.get_queue(names.tasks_queue, ensure=False)

        async def on_message(message: AbstractIncomingMessage) -> None:
            # aiormq runs each delivery in its own task, so up to `prefetch` of these overlap.
            task = msgpack.unpackb(message.body)
            event = completed_event(task, {"n": task["payload"].get("n", 0)})
            outcome = aio_pika.Message(
                msgpack.packb(event),
                content_type=MSGPACK,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=task["task_id"],
            )
            await events.publish(outcome, routing_key=event_routing_key(event), mandatory=True)
            await message.ack()

        await queue.consume(on_message)
        print("raw worker ready", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("run")
    parser.add_argument("--prefetch", type=int, default=64)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.url, RawNames(args.run), args.prefetch))
    else:
        uvloop.run(serve(args.url, RawNames(args.run), args.prefetch))


if __name__ == "__main__":
    main()
