"""`python -m orchestrator`: the orchestrator service on ORCHESTRATOR_PORT until SIGINT or SIGTERM.

The only place the orchestrator reads its environment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Final

from aiohttp import web

from orchestrator.app import SHUTDOWN_TIMEOUT_SECONDS, create_app
from orchestrator.auth import Authenticator
from orchestrator.settings import DEV_TENANT, OrchestratorSettings
from plumbing.log_context import bind_log_context
from plumbing.logs import configure_logging
from plumbing.process import run_loop
from plumbing.settings import SettingsError
from plumbing.tracing import Tracing, TracingUnavailable, build_tracing

log = logging.getLogger("orchestrator")

SERVICE_NAME: Final[str] = "orchestrator"  # the `service` of its log records


async def serve(settings: OrchestratorSettings, authenticator: Authenticator, tracing: Tracing) -> None:
    app = create_app(settings, authenticator=authenticator, tracing=tracing)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host=settings.orchestrator_host, port=settings.orchestrator_port)
        await site.start()
        log.info("orchestrator listening on %s:%d", settings.orchestrator_host, settings.orchestrator_port)
        await stop.wait()
        log.info("shutting down")
    finally:
        # Stops accepting, lets in-flight requests finish, then unwinds the cleanup contexts.
        await runner.cleanup()


def main() -> int:
    try:
        settings = OrchestratorSettings.from_env(os.environ)
    except SettingsError as exc:
        # Before logging is configured: the log level is one of the settings.
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    bind_log_context(service=SERVICE_NAME)
    try:
        tracing = build_tracing(settings.tracing, f"baton-{SERVICE_NAME}")
    except TracingUnavailable as exc:
        log.error("%s", exc)
        return 2
    authenticator, dev_key = Authenticator.from_settings(settings)
    if dev_key is not None:
        print(f"BATON_API_KEYS is not set; API key for tenant {DEV_TENANT!r}: {dev_key}", flush=True)
    try:
        run_loop(serve(settings, authenticator, tracing))
    finally:
        tracing.shutdown()  # exports the spans still batched
    return 0


if __name__ == "__main__":
    sys.exit(main())
