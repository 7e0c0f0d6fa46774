"""Following a job to its end (`--follow`): its messages from clients.cli.follow go into a JobState and
onto one of three views: rich progress bars on a terminal, a line per change when stderr is a pipe or a
file, or every message as a JSON line with --json. Returns the job's final record."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any, Protocol

from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from clients.cli.follow import Backoff, JobStream
from clients.cli.http import BatonHttp, segment
from clients.cli.output import STATUS_STYLES, Output
from clients.cli.tracking import TERMINAL_STATUSES, JobState


class LiveView(Protocol):
    def show(self, state: JobState, message: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


async def follow_to_end(
    http: BatonHttp, job_id: str, output: Output, *, workflow: bool = False, backoff: Backoff | None = None
) -> dict[str, Any]:
    """Show the job live until it ends; its final record (GET /jobs/{id})."""
    state = JobState(job_id)
    if workflow:
        steps = await http.get(f"/executions/{segment(job_id)}/steps")
        state.take_steps(steps.get("steps") or [])
    stream = JobStream(http.target, http.session, job_id, backoff, on_retry=output.note)
    view = _view(output)
    try:
        async with aclosing(stream.messages()) as messages:
            # Where the job ended, when an event without `job_status` made its record say so: the record may
            # be ahead of the stream, whose events up to that seq are still shown.
            ending: tuple[int, str] | None = None
            async for message in messages:
                if state.apply(message) and ending is None:
                    current = await http.get(f"/jobs/{segment(job_id)}")
                    if current.get("status") in TERMINAL_STATUSES:
                        ending = (int(current.get("seq") or 0), str(current["status"]))
                if ending is not None and int(message.get("seq") or 0) >= ending[0]:
                    state.status = ending[1]
                view.show(state, message)
                if state.ended:
                    break
    except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this, then raises KeyboardInterrupt
        view.close()
        output.note(f"stopped following; job {job_id} goes on: baton status {job_id}")
        raise
    finally:
        view.close()
    record: dict[str, Any] = await http.get(f"/jobs/{segment(job_id)}")
    return record


def _view(output: Output) -> LiveView:
    if output.as_json:
        return JsonLines(output)
    if output.err.is_terminal:
        return ProgressBars(output)
    return ChangeLines(output)


class JsonLines:
    def __init__(self, output: Output) -> None:
        self._output = output

    def close(self) -> None:
        return None

    def show(self, state: JobState, message: dict[str, Any]) -> None:
        self._output.json_line(message)


class ChangeLines:
    """A line on stderr whenever the job's or a step's status, percentage or message changes."""

    def __init__(self, output: Output) -> None:
        self._output = output
        self._shown: dict[str, tuple[Any, ...]] = {}

    def close(self) -> None:
        return None

    def show(self, state: JobState, message: dict[str, Any]) -> None:
        for step in state.steps.values():
            self._line(f"step {step.name}", step.status, step.percentage, step.message)
        self._line(f"job {state.job_id}", state.status, state.percentage, state.message)

    def _line(self, name: str, status: str | None, percentage: float | None, message: str | None) -> None:
        seen = (status, percentage, message)
        if self._shown.get(name) == seen:
            return
        self._shown[name] = seen
        parts = [name, status or "?"]
        if percentage is not None:
            parts.append(f"{percentage:.0f}%")
        if message:
            parts.append(message)
        self._output.note(" ".join(parts))


class ProgressBars:
    """One bar for the job and, for a workflow, one for each step, on stderr."""

    def __init__(self, output: Output) -> None:
        self._progress = Progress(
            SpinnerColumn(finished_text="•"),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[status]}"),
            TextColumn("{task.fields[message]}"),
            TimeElapsedColumn(),
            console=output.err,
        )
        self._bars: dict[str, TaskID] = {}
        self._progress.start()

    def close(self) -> None:
        self._progress.stop()

    def show(self, state: JobState, message: dict[str, Any]) -> None:
        label = f"{state.type or 'job'} {state.job_id[:8]}"
        self._bar("", label, state.status, state.percentage, state.message, state.ended)
        for step in state.steps.values():
            self._bar(step.name, f"  {step.name}", step.status, step.percentage, step.message, step.done)

    def _bar(
        self, key: str, label: str, status: str | None, percentage: float | None, message: str | None, done: bool
    ) -> None:
        name = status or ""
        shown_status = f"[{STATUS_STYLES[name]}]{name}[/]" if name in STATUS_STYLES else escape(name)
        shown_message = escape(message or "")
        completed = 100.0 if done and status == "completed" else percentage or 0.0
        if key not in self._bars:
            self._bars[key] = self._progress.add_task(
                escape(label), total=100.0, status=shown_status, message=shown_message
            )
        self._progress.update(
            self._bars[key], description=escape(label), completed=completed, status=shown_status, message=shown_message
        )
        if done:
            self._progress.stop_task(self._bars[key])
