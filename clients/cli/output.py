"""What the CLI prints: tables and records on stdout (or the server's raw JSON with --json), notes and
errors on stderr. Values from the server go into rich Text cells, never through markup."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from rich.console import Console
from rich.table import Table
from rich.text import Text

STATUS_STYLES: Final[dict[str, str]] = {
    "completed": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "retrying": "magenta",
    "queued": "blue",
    "skipped": "dim",
    "pending": "dim",
}
# A pipe has no width: wide enough that job ids and timestamps are never cut.
_PIPE_WIDTH: Final[int] = 200


@dataclass(frozen=True)
class Output:
    out: Console
    err: Console
    as_json: bool

    @classmethod
    def make(cls, as_json: bool) -> Output:
        out, err = Console(), Console(stderr=True)
        for console in (out, err):
            if not console.is_terminal and "COLUMNS" not in os.environ:
                console.width = _PIPE_WIDTH
        return cls(out, err, as_json)

    def raw(self, value: Any) -> None:
        """The server's JSON, indented, on stdout."""
        self._write(json.dumps(value, indent=2, ensure_ascii=False))

    def json_line(self, value: Any) -> None:
        self._write(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def note(self, text: str, style: str | None = None) -> None:
        self.err.print(Text(text, style=style or ""), soft_wrap=True)

    def show(self, renderable: Any) -> None:
        self.out.print(renderable)

    def value(self, value: Any) -> None:
        """A result on stdout: a string as it is, anything else as indented JSON."""
        self._write(value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False))

    def _write(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def status_text(status: Any) -> Text:
    name = "" if status is None else str(status)
    return Text(name, style=STATUS_STYLES.get(name, ""))


def cell(value: Any) -> Text:
    if value is None:
        return Text("-", style="dim")
    if isinstance(value, str):
        return Text(value)
    return Text(json.dumps(value, ensure_ascii=False))


def percentage(progress: Any) -> Text:
    if isinstance(progress, dict) and isinstance(progress.get("percentage"), int | float):
        return Text(f"{progress['percentage']:.0f}%")
    return Text("-", style="dim")


def jobs_table(jobs: Iterable[dict[str, Any]], total: int | None = None) -> Table:
    table = Table(title=None if total is None else f"{total} job(s)", title_justify="left")
    table.add_column("job id", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("progress", justify="right", no_wrap=True)
    table.add_column("priority", justify="right")
    table.add_column("created at", no_wrap=True)
    table.add_column("session")
    for job in jobs:
        table.add_row(
            cell(job.get("job_id")),
            cell(job.get("type")),
            status_text(job.get("status")),
            percentage(job.get("progress")),
            cell(job.get("priority")),
            cell(job.get("created_at")),
            cell(job.get("session_id")),
        )
    return table


_RECORD_FIELDS: Final[tuple[str, ...]] = (
    "job_id",
    "type",
    "status",
    "service",
    "priority",
    "session_id",
    "attempt",
    "created_at",
    "updated_at",
    "progress",
    "result",
    "error",
    "delegated_services",
    "parent",
    "retry_of",
    "context",
)


def record_table(record: dict[str, Any]) -> Table:
    """One job's record, a field a row; fields the record does not have are left out."""
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for name in _RECORD_FIELDS:
        if name not in record or (name in ("parent", "retry_of") and record[name] is None):
            continue
        value = record[name]
        table.add_row(name, status_text(value) if name == "status" else cell(value))
    return table


def dead_letters_table(listing: dict[str, Any]) -> Table:
    entries = listing.get("entries") or []
    more = " (the scan stopped early: more may be parked)" if listing.get("truncated") else ""
    table = Table(title=f"{listing.get('queue')}: {len(entries)} parked task(s){more}", title_justify="left")
    for name in ("task id", "job id", "type", "reason", "attempts", "error", "dead at"):
        table.add_column(name, no_wrap=name in ("task id", "job id", "dead at"))
    for entry in entries:
        error = entry.get("error") if entry.get("decodable", True) else f"undecodable: {entry.get('decode_error')}"
        table.add_row(
            cell(entry.get("task_id")),
            cell(entry.get("job_id")),
            cell(entry.get("type")),
            cell(entry.get("reason")),
            cell(entry.get("attempts")),
            cell(error),
            cell(entry.get("dead_at")),
        )
    return table


def health_table(report: dict[str, Any]) -> Table:
    title = Text.assemble(
        "status ",
        (str(report.get("status")), "green" if report.get("status") == "ok" else "red"),
        f"  broker {report.get('broker')}  redis {report.get('redis')}",
    )
    table = Table(title=title, title_justify="left")
    for name in ("service", "queue", "messages", "consumers", "live workers", "dead letters", "breakers"):
        table.add_column(name, no_wrap=name in ("service", "queue"))
    for service, health in sorted((report.get("services") or {}).items()):
        breakers = ", ".join(f"{b.get('target')} {b.get('state')}" for b in health.get("circuit_breakers") or [])
        table.add_row(
            cell(service),
            cell(health.get("queue")),
            cell(health.get("messages")),
            cell(health.get("consumers")),
            cell(health.get("live_workers")),
            cell(health.get("dead_letters")),
            cell(breakers or None),
        )
    return table
