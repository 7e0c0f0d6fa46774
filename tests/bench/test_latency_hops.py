"""The latency breakdown's pure part: WebSocket messages into stamps, stamps into the hop table and windows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.bench.latency_hops import END_TO_END, Post, Seen, breakdown, note_event, render

T0 = 1_800_000_000.0  # a wall-clock second; every stamp below is T0 + a few ms


def event(job_id: str, kind: str, at_ms: float, **data: Any) -> dict[str, Any]:
    """A TaskEvent as the WebSocket sends it (its timestamp in ISO 8601, as pydantic writes it)."""
    stamp = datetime.fromtimestamp(T0 + at_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
    return {"event": kind, "global_task_id": job_id, "timestamp": stamp, "seq": 2, "data": data}


def at(ms: float) -> float:
    return T0 + ms / 1000


def since_t0(stamp: float | None) -> float:
    assert stamp is not None
    return (stamp - T0) * 1000


def ms(value: float) -> Any:
    """A figure in ms, as close as wall-clock seconds near T0 allow (a float's step there is 0.24 µs)."""
    return pytest.approx(value, abs=0.01)


def seen_from(messages: list[tuple[dict[str, Any], float]]) -> dict[str, Seen]:
    seen: dict[str, Seen] = {}
    for message, received_ms in messages:
        note_event(seen, message, at(received_ms))
    return seen


def test_the_orchestrators_queued_announcement_is_the_created_stamp_never_the_workers_start() -> None:
    seen = seen_from([(event("j1", "task_status_update", 2.0, status="queued"), 3.0)])
    assert since_t0(seen["j1"].created) == ms(2.0)
    assert seen["j1"].started is None  # with track_started off this is all a job says before its end


def test_each_stamp_is_the_first_of_its_kind_and_other_messages_are_ignored() -> None:
    seen = seen_from(
        [
            ({"type": "pong"}, 0.0),
            (event("j1", "task_status_update", 2.0, status="queued"), 3.0),
            (event("j1", "task_status_update", 5.0, status="running"), 7.0),
            (event("j1", "task_status_update", 6.0, status="running", progress={"percentage": 50}), 8.0),
            (event("j1", "task_completed", 5.5, result={}), 9.5),
            (event("j1", "task_completed", 8.0, result={}), 12.0),  # a repeat: the first one counts
        ]
    )
    assert list(seen) == ["j1"]
    stamps = seen["j1"]
    assert (since_t0(stamps.started), since_t0(stamps.completed)) == (ms(5.0), ms(5.5))
    assert (stamps.terminal, since_t0(stamps.terminal_received)) == ("task_completed", ms(9.5))


def test_a_failed_job_ends_without_a_completed_stamp() -> None:
    seen = seen_from([(event("j1", "task_failed", 4.0, status="failed"), 6.0)])
    assert (seen["j1"].terminal, seen["j1"].completed) == ("task_failed", None)


def test_the_hop_table_covers_the_done_jobs_and_counts_the_others() -> None:
    posts = {
        "fast": Post(at(0), at(6)),
        "slow": Post(at(10), at(30)),
        "failed": Post(at(20), at(25)),
        "lost": Post(at(30), at(36)),
    }
    seen = seen_from(
        [
            (event("fast", "task_status_update", 2, status="queued"), 3),
            (event("fast", "task_status_update", 5, status="running"), 6),
            (event("fast", "task_completed", 6, result={}), 10),
            (event("slow", "task_status_update", 12, status="queued"), 13),
            (event("slow", "task_status_update", 40, status="running"), 41),
            (event("slow", "task_completed", 41, result={}), 60),
            (event("failed", "task_failed", 30, status="failed"), 31),
        ]
    )
    result = breakdown(posts, seen)
    assert (result.accepted, result.done, result.failed, result.lost) == (4, 2, 1, 1)
    hops = {hop: (stats["jobs"], stats["p50_ms"], stats["max_ms"]) for hop, stats in result.hops.items()}
    # p50 of two is the nearest rank, the first (common.percentile)
    assert hops == {
        "POST -> answer": (2, ms(6), ms(20)),
        "POST -> created (orchestrator)": (2, ms(2), ms(2)),
        "POST -> worker start": (2, ms(5), ms(30)),
        "worker start -> worker completed": (2, ms(1), ms(1)),
        "worker completed -> WebSocket": (2, ms(4), ms(19)),
        END_TO_END: (2, ms(10), ms(50)),
    }


def test_without_running_events_the_hops_from_the_workers_start_are_absent_not_zero() -> None:
    posts = {"j1": Post(at(0), at(6))}
    seen = seen_from(
        [
            (event("j1", "task_status_update", 2, status="queued"), 3),
            (event("j1", "task_completed", 6, result={}), 10),
        ]
    )
    result = breakdown(posts, seen)
    assert set(result.hops) == {
        "POST -> answer",
        "POST -> created (orchestrator)",
        "worker completed -> WebSocket",
        END_TO_END,
    }
    lines = render(result)
    assert any(line.startswith("POST -> worker start") and "no job done has both stamps" in line for line in lines)


def test_the_windows_give_the_max_end_to_end_per_quarter_second_of_posting() -> None:
    posted_ms = {"a": 0, "b": 100, "c": 260, "d": 900, "e": 1010}
    latency_ms = {"a": 10, "b": 40, "c": 15, "d": 300}  # "e" is lost: its window has no job done
    posts = {job: Post(at(offset), at(offset + 5)) for job, offset in posted_ms.items()}
    seen = seen_from(
        [
            (event(job, "task_completed", posted_ms[job] + 1), posted_ms[job] + latency)
            for job, latency in latency_ms.items()
        ]
    )
    result = breakdown(posts, seen)
    assert result.windows_ms == [ms(40), ms(15), None, ms(300), None]
    lines = render(result)
    assert lines[-1].split() == ["0.0", "s", "40", "15", "-", "300", "-"]


def test_no_job_accepted_gives_an_empty_table() -> None:
    result = breakdown({}, {})
    assert (result.accepted, result.done, result.lost, result.hops, result.windows_ms) == (0, 0, 0, {}, [])
