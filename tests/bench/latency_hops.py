"""One job's latency hop by hop: the stamps a latency breakdown takes, and the table made of them (pure).

Every stamp is wall-clock seconds (`time.time()`): the client's own (a POST's start and answer, a WebSocket
message's arrival) and those the orchestrator and the worker put in the events they send: the job's
`created_at` (the orchestrator's queued announcement) and the `timestamp` of the worker's running and
task_completed events. Hops across processes compare their clocks, so they hold only on one host.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.bench.common import percentile
from tests.bench.ws_client import TERMINAL_EVENTS

WINDOW_SECONDS = 0.25
WINDOWS_PER_LINE = 20
END_TO_END = "POST -> WebSocket terminal"
# hop -> (from stamp, to stamp); the stamps are JobStamps' fields.
HOPS: Mapping[str, tuple[str, str]] = {
    "POST -> answer": ("posted", "answered"),
    "POST -> created (orchestrator)": ("posted", "created"),
    "POST -> worker start": ("posted", "started"),
    "worker start -> worker completed": ("started", "completed"),
    "worker completed -> WebSocket": ("completed", "terminal_received"),
    END_TO_END: ("posted", "terminal_received"),
}
PERCENTILES = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99}


@dataclass(frozen=True)
class Post:
    """When the POST that created a job (its batch's, for POST /jobs/batch) started and was answered."""

    started: float
    answered: float


@dataclass
class Seen:
    """What the WebSocket client learnt of one job: the first stamp of each kind."""

    # The orchestrator's created_at, from its queued announcement: missing when the worker's first event got to
    # the WebSocket hub first (the hub drops what is not newer than what the client has had).
    created: float | None = None
    started: float | None = None  # the worker's running event
    completed: float | None = None  # the worker's task_completed event
    terminal: str | None = None  # the terminal event's kind
    terminal_received: float | None = None  # when it reached the client


@dataclass(frozen=True)
class JobStamps:
    posted: float
    answered: float
    created: float | None
    started: float | None
    completed: float | None
    terminal_received: float | None


@dataclass(frozen=True)
class Breakdown:
    accepted: int  # jobs whose POST was answered with a job id
    done: int  # their task_completed reached the WebSocket client
    failed: int  # another terminal event did
    lost: int  # no terminal event did
    hops: dict[str, dict[str, float]]  # hop -> jobs, p50_ms, p90_ms, p99_ms, max_ms; over the done jobs having both
    windows_ms: list[float | None]  # per window of posting: its done jobs' max end to end (None: none done)
    window_s: float


def event_stamp(value: Any) -> float | None:
    """An event's ISO 8601 `timestamp` as wall-clock seconds (None when absent or unreadable)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def note_event(seen: dict[str, Seen], message: dict[str, Any], received: float) -> None:
    """Takes one WebSocket event message's stamps into `seen` (first of each kind wins)."""
    job_id, kind = message.get("global_task_id"), message.get("event")
    if not isinstance(job_id, str) or not isinstance(kind, str):
        return
    stamps = seen.setdefault(job_id, Seen())
    data = message.get("data")
    status = data.get("status") if isinstance(data, dict) else None
    if kind == "task_status_update":
        # The queued announcement is a task_status_update too, stamped by the orchestrator: never the worker's start.
        if status == "queued" and stamps.created is None:
            stamps.created = event_stamp(message.get("timestamp"))
        elif status == "running" and stamps.started is None:
            stamps.started = event_stamp(message.get("timestamp"))
    elif kind in TERMINAL_EVENTS and stamps.terminal is None:
        stamps.terminal, stamps.terminal_received = kind, received
        if kind == "task_completed":
            stamps.completed = event_stamp(message.get("timestamp"))


def breakdown(posts: Mapping[str, Post], seen: Mapping[str, Seen], window_s: float = WINDOW_SECONDS) -> Breakdown:
    """The hop table over the jobs done, and the max end to end per `window_s` of posting (from the first POST)."""
    done: list[JobStamps] = []
    failed = 0
    for job_id, post in posts.items():
        stamps = seen.get(job_id, Seen())
        if stamps.terminal == "task_completed":
            done.append(
                JobStamps(
                    post.started,
                    post.answered,
                    stamps.created,
                    stamps.started,
                    stamps.completed,
                    stamps.terminal_received,
                )
            )
        elif stamps.terminal is not None:
            failed += 1
    hops: dict[str, dict[str, float]] = {}
    for hop, (start, end) in HOPS.items():
        spans = between(done, start, end)
        if spans:
            hops[hop] = {"jobs": len(spans)}
            hops[hop] |= {name: percentile(spans, fraction) * 1000 for name, fraction in PERCENTILES.items()}
            hops[hop]["max_ms"] = max(spans) * 1000
    return Breakdown(
        accepted=len(posts),
        done=len(done),
        failed=failed,
        lost=len(posts) - len(done) - failed,
        hops=hops,
        windows_ms=window_maxima(posts.values(), done, window_s),
        window_s=window_s,
    )


def between(jobs: list[JobStamps], start: str, end: str) -> list[float]:
    """`end - start` for each job that has both stamps."""
    spans = []
    for job in jobs:
        a, b = getattr(job, start), getattr(job, end)
        if a is not None and b is not None:
            spans.append(b - a)
    return spans


def window_maxima(posts: Iterable[Post], done: list[JobStamps], window_s: float) -> list[float | None]:
    """Per `window_s` of posting, from the first POST to the last: the max end to end of its done jobs.
    A stall shows as a few windows far above the rest; steady queueing as a floor that rises in every one."""
    starts = [post.started for post in posts]
    if not starts:
        return []
    first = min(starts)
    maxima: list[float | None] = [None] * (int((max(starts) - first) / window_s) + 1)
    for job in done:
        if job.terminal_received is None:
            continue
        index = int((job.posted - first) / window_s)
        latency = (job.terminal_received - job.posted) * 1000
        current = maxima[index]
        maxima[index] = latency if current is None else max(current, latency)
    return maxima


def render(result: Breakdown) -> list[str]:
    """The hop table, the counts and the windows, as lines of text."""
    lines = [
        f"jobs accepted {result.accepted:,}: done {result.done:,}, failed {result.failed:,}, lost {result.lost:,} "
        "(lost: no terminal event reached the WebSocket client)",
        "",
        f"{'hop':<34}{'jobs':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}  ms",
    ]
    for hop in HOPS:
        stats = result.hops.get(hop)
        if stats is None:
            lines.append(f"{hop:<34}{0:>7}  (no job done has both stamps)")
            continue
        figures = "".join(f"{stats[name]:>9.1f}" for name in (*PERCENTILES, "max_ms"))
        lines.append(f"{hop:<34}{int(stats['jobs']):>7,}{figures}")
    lines += [
        "",
        f"max {END_TO_END} per {result.window_s * 1000:g} ms of posting, ms (-: no job posted in it was done):",
    ]
    for first in range(0, len(result.windows_ms), WINDOWS_PER_LINE):
        part = result.windows_ms[first : first + WINDOWS_PER_LINE]
        shown = " ".join(f"{_ms(v):>5}" for v in part)
        lines.append(f"{first * result.window_s:>6.1f} s {shown}")
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.0f}"
