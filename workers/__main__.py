"""`python -m workers <service>` (a built-in: query, embedding, ingestion, agent) or
`python -m workers package.module:attr` (a user's Worker, or a zero-argument function returning one).

The only place a worker process reads its environment.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from plumbing.logs import configure_logging
from plumbing.process import run_loop
from plumbing.settings import SettingsError
from plumbing.tracing import TracingUnavailable, build_tracing
from workers.config import WorkerSettings
from workers.errors import ConfigurationError
from workers.runtime import run_worker
from workers.sdk import Worker
from workers.services import BUILTIN_MODULES

log = logging.getLogger("workers")


def load_worker(target: str) -> Worker:
    """A built-in service name, or `module:attr` naming a Worker (or a factory returning one)."""
    if ":" not in target:
        if target not in BUILTIN_MODULES:
            raise ConfigurationError(
                f"{target!r} is not a built-in service ({', '.join(sorted(BUILTIN_MODULES))}) nor module:attr"
            )
        module_name, attr = BUILTIN_MODULES[target], "worker"
    else:
        module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    obj = getattr(module, attr, None)
    if obj is None:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}")
    if not isinstance(obj, Worker) and callable(obj):
        obj = obj()
    if not isinstance(obj, Worker):
        raise ConfigurationError(f"{target} is a {type(obj).__name__}, not a workers.Worker")
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers", description="Run one Baton worker process.")
    parser.add_argument("target", help="built-in service (query, embedding, ingestion, agent) or module:attr")
    args = parser.parse_args(argv)
    try:
        settings = WorkerSettings.from_env(os.environ)
    except SettingsError as exc:
        # Before logging is configured: the log level is one of the settings.
        print(f"workers: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        worker = load_worker(args.target)
        tracing = build_tracing(settings.tracing, f"baton-worker-{worker.service}")
    except (ConfigurationError, TracingUnavailable) as exc:
        log.error("%s", exc)
        return 2
    try:
        return run_loop(run_worker(worker, settings, tracing=tracing))
    finally:
        tracing.shutdown()  # exports the spans still batched


if __name__ == "__main__":
    sys.exit(main())
