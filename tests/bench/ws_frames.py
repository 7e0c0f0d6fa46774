"""Orchestrator CPU per event delivered to one busy WebSocket watcher: one frame per event vs batched frames.

    PYTHONPATH=. python -m tests.bench.ws_frames [--events 10000] [--rate 2000] [--window 16] [--rounds 2]

The WebSocket routes and hub run in this process (tests.orchestrator_live.ws_rig, real Redis for the registry);
the watcher (tests.bench.ws_client.JobWatcher, subscribed to all) runs in a child process so that its CPU is not
counted. Windows of `--window` updates are handed to the hub in one synchronous step, as the event consumer does
per delivery window, at `--rate` events/s; this process's CPU time from the first window until the watcher has
the last event, over the events, is the figure. Modes alternate within each round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import aiohttp
import redis.asyncio as aioredis

from orchestrator.models import JobUpdate
from tests.bench.ws_client import JobWatcher
from tests.orchestrator_live.ws_rig import serve_ws


async def watch(url: str, key: str, events: int, batch: bool) -> None:
    """The child: watch every job of the tenant until `events` terminal events came; say when ready and done."""
    async with aiohttp.ClientSession() as session:
        watcher = await JobWatcher.connect(session, url, {"Authorization": f"Bearer {key}"}, batch=batch)
        print("ready", flush=True)
        while len(watcher.terminal) < events:
            watcher.changed.clear()
            await watcher.changed.wait()
            if watcher.cut_off:
                raise SystemExit(watcher.cut_off)
        print("done", flush=True)
        await watcher.close()


async def one_mode(redis_url: str, events: int, rate: float, window: int, batch: bool) -> float:
    """CPU ms of this process per event delivered."""
    unique = uuid.uuid4().hex[:10]
    tenant = f"t-bench-{unique}"
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with serve_ws(redis, tenant, unique, client_buffer=1_000_000) as server:
            url = str(server.client.make_url("")).rstrip("/")
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.bench.ws_frames",
                "--watch",
                url,
                server.key,
                str(events),
                str(int(batch)),
                stdout=subprocess.PIPE,
            )
            assert child.stdout is not None
            assert (await child.stdout.readline()).strip() == b"ready"
            await asyncio.sleep(0.2)  # the subscription is in place
            hub = server.parts.hub
            started_cpu, started = time.process_time(), time.perf_counter()
            for first in range(0, events, window):
                for index in range(first, min(first + window, events)):
                    # Each a job's terminal event: what the watcher counts (and the hub forgets at once).
                    job_id = f"job-{index}"
                    body = {"event": "task_completed", "global_task_id": job_id, "seq": 2, "data": {"result": index}}
                    hub.dispatch(JobUpdate(tenant, job_id, seq=2, status="completed", terminal=True, event=body))
                delay = started + (first + window) / rate - time.perf_counter()
                await asyncio.sleep(max(0.0, delay))
            assert (await child.stdout.readline()).strip() == b"done"
            cpu = time.process_time() - started_cpu
            await child.wait()
            return cpu * 1000 / events
    finally:
        await redis.aclose()


async def main(args: argparse.Namespace) -> None:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    figures: dict[str, list[float]] = {"single": [], "batched": []}
    for _ in range(args.rounds):
        for mode in ("single", "batched"):
            figures[mode].append(await one_mode(redis_url, args.events, args.rate, args.window, mode == "batched"))
    single, batched = min(figures["single"]), min(figures["batched"])
    print(
        json.dumps(
            {
                "events": args.events,
                "rate": args.rate,
                "window": args.window,
                "cpu_ms_per_event": {mode: [round(v, 4) for v in values] for mode, values in figures.items()},
                "batched_over_single": round(batched / single, 3),
                "load_average": os.getloadavg(),
            }
        )
    )


def cli() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--watch":
        url, key, events, batch = sys.argv[2:6]
        asyncio.run(watch(url, key, int(events), batch == "1"))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second handed to the hub")
    parser.add_argument("--window", type=int, default=16, help="events per synchronous step (a delivery window)")
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
