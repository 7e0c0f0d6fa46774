"""health."""

from __future__ import annotations

import typer

from clients.cli.commands import run_with
from clients.cli.config import DEFAULT_URL, AsJson, Url, target
from clients.cli.errors import OK, UNREACHABLE
from clients.cli.http import BatonHttp
from clients.cli.output import Output, health_table


def register(app: typer.Typer) -> None:
    app.command("health")(health)


def health(url: Url = DEFAULT_URL, as_json: AsJson = False) -> int:
    """The broker, Redis, and each service queue's depth, consumers and live workers (no key needed).

    Exit 0 when the broker and Redis are up, 5 when one is down or the orchestrator cannot be reached."""

    async def action(http: BatonHttp, output: Output) -> int:
        status, report = await http.call("GET", "/health", accept=frozenset({503}))
        if output.as_json:
            output.raw(report)
        else:
            output.show(health_table(report))
        return OK if status == 200 else UNREACHABLE

    return run_with(target(url, None, as_json), action)
