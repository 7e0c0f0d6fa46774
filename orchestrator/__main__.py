"""`python -m orchestrator [--processes N]`: the orchestrator service on ORCHESTRATOR_PORT until SIGINT or SIGTERM.

The only place the orchestrator reads its environment. With N > 1 (or ORCHESTRATOR_PROCESSES) this
process is the parent of N orchestrator processes sharing the port (orchestrator.process_group).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Final

from aiohttp import web

from orchestrator.app import SHUTDOWN_TIMEOUT_SECONDS, create_app
from orchestrator.auth import Authenticator, new_dev_key
from orchestrator.process_group import run_group, watch_parent
from orchestrator.settings import DEV_TENANT, MAX_PROCESSES, OrchestratorSettings
from plumbing.cancellation import cancel_and_wait
from plumbing.log_context import bind_log_context
from plumbing.logs import configure_logging
from plumbing.process import run_loop
from plumbing.settings import SettingsError
from plumbing.tracing import Tracing, TracingUnavailable, build_tracing

log = logging.getLogger("orchestrator")

SERVICE_NAME: Final[str] = "orchestrator"  # the `service` of its log records


async def serve(
    settings: OrchestratorSettings, authenticator: Authenticator, tracing: Tracing, *, member_of: int | None = None
) -> None:
    """Serve until SIGINT or SIGTERM; as a member of a process group (`member_of`: the parent's pid)
    on a port shared with SO_REUSEPORT, and until that parent is gone."""
    app = create_app(settings, authenticator=authenticator, tracing=tracing)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = None
    if member_of is not None:
        watcher = asyncio.create_task(watch_parent(member_of, stop), name="baton-parent-watch")
    try:
        site = web.TCPSite(
            runner, host=settings.orchestrator_host, port=settings.orchestrator_port, reuse_port=member_of is not None
        )
        await site.start()
        log.info("orchestrator listening on %s:%d", settings.orchestrator_host, settings.orchestrator_port)
        await stop.wait()
        log.info("shutting down")
    finally:
        if watcher is not None:
            await cancel_and_wait(watcher)
        # Stops accepting, lets in-flight requests finish, then unwinds the cleanup contexts.
        await runner.cleanup()


def process_count(text: str) -> int:
    """An argparse type: 1 to MAX_PROCESSES."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of processes, 1 to {MAX_PROCESSES}, not {text!r}") from None
    if not 1 <= count <= MAX_PROCESSES:
        raise argparse.ArgumentTypeError(f"1 to {MAX_PROCESSES} processes, not {count}")
    return count


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator", description="Run the Baton orchestrator.")
    parser.add_argument(
        "--processes",
        type=process_count,
        metavar="N",
        help=f"orchestrator processes sharing the port, 1 to {MAX_PROCESSES} (default: ORCHESTRATOR_PROCESSES, or 1)",
    )
    # Internal: how the parent of --processes N starts each child (the parent's pid).
    parser.add_argument("--member-of", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)  # a bad flag exits with status 2 and argparse's message
    try:
        settings = OrchestratorSettings.from_env(os.environ)
    except SettingsError as exc:
        # Before logging is configured: the log level is one of the settings.
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    bind_log_context(service=SERVICE_NAME)
    processes = args.processes or settings.processes
    if processes > 1 and args.member_of is None:
        return asyncio.run(
            run_group(processes, settings.orchestrator_host, settings.orchestrator_port, _group_env(settings))
        )
    try:
        tracing = build_tracing(settings.tracing, f"baton-{SERVICE_NAME}")
    except TracingUnavailable as exc:
        log.error("%s", exc)
        return 2
    authenticator, dev_key = Authenticator.from_settings(settings)
    if dev_key is not None:
        print(f"BATON_API_KEYS is not set; API key for tenant {DEV_TENANT!r}: {dev_key}", flush=True)
    try:
        run_loop(serve(settings, authenticator, tracing, member_of=args.member_of))
    finally:
        tracing.shutdown()  # exports the spans still batched
    return 0


def _group_env(settings: OrchestratorSettings) -> dict[str, str]:
    """The children's environment: this one, with the dev key made once here when BATON_API_KEYS is
    unset, so that one key works whichever process a connection reaches."""
    env = dict(os.environ)
    if settings.api_keys is None:
        dev_key = new_dev_key()
        print(f"BATON_API_KEYS is not set; API key for tenant {DEV_TENANT!r}: {dev_key}", flush=True)
        env["BATON_API_KEYS"] = f"{DEV_TENANT}:{dev_key}"
    return env


if __name__ == "__main__":
    sys.exit(main())
