"""workflows run."""

from __future__ import annotations

from typing import Annotated

import typer

from clients.cli.commands import optional, run_with
from clients.cli.commands.outcome import accepted
from clients.cli.config import DEFAULT_URL, AsJson, Key, Url, target
from clients.cli.http import BatonHttp, segment
from clients.cli.inputs import json_object, priority
from clients.cli.output import Output


def register(app: typer.Typer) -> None:
    workflows = typer.Typer(help="Run workflows.", no_args_is_help=True)
    workflows.command("run")(run)
    app.add_typer(workflows, name="workflows")


def run(
    workflow_id: Annotated[str, typer.Argument(metavar="WORKFLOW_ID", help="The workflow's id.")],
    data: Annotated[str, typer.Option("--data", "-d", help="The input: a JSON object, @file, or @- for stdin.")] = "{}",
    manual: Annotated[bool, typer.Option("--manual", help="Pause before each step until it is continued.")] = False,
    run_priority: Annotated[
        str | None, typer.Option("--priority", help="high, medium, low or 0-9.", show_default=False)
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="The same key returns the same execution.", show_default=False),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Show its steps live until it ends; exit 0 completed, 1 otherwise.")
    ] = False,
    url: Url = DEFAULT_URL,
    key: Key = None,
    as_json: AsJson = False,
) -> int:
    """Start an execution of a workflow; print its id (or, with --follow, its steps live then its result)."""
    body = {
        "data": json_object("--data", data),
        **optional(
            mode="manual" if manual else None, priority=priority(run_priority), idempotency_key=idempotency_key
        ),
    }

    async def action(http: BatonHttp, output: Output) -> int:
        answer = await http.post(f"/workflows/{segment(workflow_id)}/execute-async", body)
        execution_id = str(answer.get("execution_id"))
        note = f"execution {execution_id} of {workflow_id} {answer.get('status')}"
        return await accepted(http, output, answer, execution_id, note, follow=follow, workflow=True)

    return run_with(target(url, key, as_json), action)
