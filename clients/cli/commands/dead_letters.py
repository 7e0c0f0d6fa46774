"""dead-letters SERVICE [--replay [--task-id ID ...] | --replay-all]."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from clients.cli.commands import run_with
from clients.cli.config import DEFAULT_URL, AsJson, Key, Url, target
from clients.cli.errors import JOB_FAILED, OK, BadInput
from clients.cli.http import BatonHttp, segment
from clients.cli.output import Output, dead_letters_table


def register(app: typer.Typer) -> None:
    app.command("dead-letters")(dead_letters)


def dead_letters(
    service: Annotated[str, typer.Argument(metavar="SERVICE", help="The service, e.g. query.")],
    replay: Annotated[
        bool, typer.Option("--replay", help="Replay the tasks named by --task-id, or else the ones listed.")
    ] = False,
    task_ids: Annotated[
        list[str] | None, typer.Option("--task-id", help="A parked task to replay (repeat for more).")
    ] = None,
    replay_all: Annotated[bool, typer.Option("--replay-all", help="Replay every parked task of the key.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="List at most this many.")] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many first.")] = 0,
    url: Url = DEFAULT_URL,
    key: Key = None,
    as_json: AsJson = False,
) -> int:
    """List a service's parked tasks, or replay them as new attempts of their jobs."""
    if replay_all and (replay or task_ids):
        raise BadInput("--replay-all replays every parked task: give it without --replay and --task-id")
    if task_ids and not replay:
        raise BadInput("--task-id names tasks to replay: add --replay")
    path = f"/dead-letters/{segment(service)}"

    async def action(http: BatonHttp, output: Output) -> int:
        if replay_all:
            return _replayed(await http.post(f"{path}/replay", {"all": True}), output)
        listing = await http.get(path, {"limit": limit, "offset": offset})
        if not replay:
            if output.as_json:
                output.raw(listing)
            else:
                output.show(dead_letters_table(listing))
            return OK
        chosen = list(dict.fromkeys(task_ids or _replayable(listing)))
        if not chosen:
            output.note("nothing to replay: no replayable task is listed")
            return OK
        return _replayed(await http.post(f"{path}/replay", {"task_ids": chosen}), output)

    return run_with(target(url, key, as_json), action)


def _replayable(listing: dict[str, Any]) -> list[str]:
    return [
        str(entry["task_id"])
        for entry in listing.get("entries") or []
        if entry.get("decodable", True) and entry.get("task_id")
    ]


def _replayed(answer: dict[str, Any], output: Output) -> int:
    """0 when every task was replayed, 1 when some were not (each error on stderr)."""
    errors = answer.get("errors") or []
    if output.as_json:
        output.raw(answer)
    else:
        for task in answer.get("replayed") or []:
            attempt = task.get("attempt")
            output.note(f"replayed task {task.get('task_id')} of job {task.get('job_id')} (attempt {attempt})")
        for error in errors:
            why = f"{error.get('error')}: {error.get('detail')}"
            output.note(f"not replayed: task {error.get('task_id')}: {why}", "red")
        if answer.get("truncated"):
            output.note("the scan stopped at its bound: run the replay again for the rest")
        if not answer.get("replayed") and not errors:
            output.note("nothing to replay")
    return JOB_FAILED if errors else OK
