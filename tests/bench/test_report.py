"""The benchmark's report: pure functions, checked without running a benchmark."""

from __future__ import annotations

import math

from tests.bench.baton_runs import Posted, split_posted
from tests.bench.common import latency_rates
from tests.bench.profiling import budget, render_budget, summarise
from tests.bench.report import cpu_rows, round_ratios, spread_rows

ROUNDS = [
    {"limit": 1000.0, "single": 300.0, "batch": 400.0, "celery": 500.0, "dramatiq": 400.0},
    {"limit": 800.0, "single": 320.0, "batch": 360.0, "celery": 600.0, "dramatiq": 800.0},
    {"limit": 1200.0, "single": 240.0, "batch": 480.0, "celery": 400.0, "dramatiq": 600.0},
]


def test_each_ratio_and_rate_gets_its_median_and_range_over_the_rounds() -> None:
    rows, summary = spread_rows(ROUNDS)
    assert summary["baton_batch/limit"] == {"median": 0.4, "min": 0.4, "max": 0.45}
    assert summary["baton_single/celery"]["median"] == 0.6
    assert summary["baton_batch/dramatiq"] == {"median": 0.8, "min": 0.45, "max": 1.0}
    assert summary["baton_single/dramatiq"] == {"median": 0.4, "min": 0.4, "max": 0.75}
    table = {measure: value for _, measure, value in rows}
    assert table["baton_batch/limit: median (min-max)"] == "0.40 (0.40-0.45)"
    assert table["baton_single/dramatiq: median (min-max)"] == "0.40 (0.40-0.75)"
    assert table["limit: median (min-max)"] == "1000 (800-1200)"
    assert table["dramatiq: median (min-max)"] == "600 (400-800)"
    assert summary["rounds"] == ROUNDS


def test_a_round_without_a_rate_is_left_out_of_its_ratios() -> None:
    rounds = [
        {"limit": 1000.0, "single": 300.0, "batch": 400.0, "celery": 500.0, "dramatiq": 500.0},
        {"limit": 0.0, "single": 320.0, "batch": 360.0, "celery": 600.0, "dramatiq": 0.0},
    ]
    rows, summary = spread_rows(rounds)
    assert summary["baton_batch/limit"] == {"median": 0.4, "min": 0.4, "max": 0.4}
    assert summary["baton_batch/dramatiq"] == {"median": 0.8, "min": 0.8, "max": 0.8}
    assert dict((measure, value) for _, measure, value in rows)["batch: median (min-max)"] == "380 (360-400)"


def test_a_peer_the_round_did_not_measure_gives_no_ratio() -> None:
    ratios = round_ratios({"limit": 1000.0, "single": 300.0, "batch": 400.0, "celery": 500.0})
    assert list(ratios) == [
        "baton_batch/limit",
        "baton_single/limit",
        "baton_batch/celery",
        "baton_single/celery",
        "baton_batch/dramatiq",
        "baton_single/dramatiq",
    ]
    assert ratios["baton_single/celery"] == 0.6
    assert math.isnan(ratios["baton_batch/dramatiq"])


def test_cpu_rows_give_every_process_of_every_system_then_the_totals_side_by_side() -> None:
    runs = {
        "limit": {
            "cpu_ms": {"raw worker": 0.78, "rabbitmq": 0.92, "all": 1.7},
            "writes": {"raw worker": 2.0, "rabbitmq": 7.25},
        },
        "dramatiq (processes x1, threads x16)": {"cpu_ms": {"dramatiq worker": 0.82, "redis": 0.44, "all": 1.26}},
    }
    rows = cpu_rows(runs)
    assert rows == [
        ("CPU ms/job, limit", "raw worker", "0.78 (2.0 writes)"),
        ("CPU ms/job, limit", "rabbitmq", "0.92 (7.2 writes)"),
        ("CPU ms/job, limit", "all", "1.70"),
        ("CPU ms/job, dramatiq (processes x1, threads x16)", "dramatiq worker", "0.82"),
        ("CPU ms/job, dramatiq (processes x1, threads x16)", "redis", "0.44"),
        ("CPU ms/job, dramatiq (processes x1, threads x16)", "all", "1.26"),
        ("CPU ms/job, all processes", "limit", "1.70"),
        ("CPU ms/job, all processes", "dramatiq (processes x1, threads x16)", "1.26"),
    ]


def test_latency_rates_per_mode_fall_back_to_the_shared_option_then_to_the_defaults() -> None:
    defaults = {"single": "200", "batch": "400"}
    assert latency_rates(defaults, {"single": None, "batch": None}, None) == {"single": [200.0], "batch": [400.0]}
    assert latency_rates(defaults, {"single": None, "batch": None}, "300,500") == {
        "single": [300.0, 500.0],
        "batch": [300.0, 500.0],
    }
    assert latency_rates(defaults, {"single": "150", "batch": None}, "300") == {"single": [150.0], "batch": [300.0]}


def test_refused_jobs_are_split_from_the_accepted_ones() -> None:
    posted = [
        Posted("a", 1.0),
        Posted(None, 1.0, "broker_unavailable"),
        Posted("b", 2.0, "publish_unconfirmed"),  # refused, but named: it may still run
        Posted("c", 2.0),
    ]
    started, rejected = split_posted(posted)
    assert started == {"a": 1.0, "c": 2.0}
    assert [p.error for p in rejected] == ["broker_unavailable", "publish_unconfirmed"]


# py-spy's raw output: one collapsed stack per line with its sample count; with --subprocesses each
# stack starts with its process.
ENTRY = 'process 7:"python -m orchestrator";<module> (orchestrator/__main__.py:9);run_loop (plumbing/process.py:40)'
COLLAPSED = "\n".join(
    [
        f"{ENTRY};run (asyncio/runners.py:44);"
        "JobRoutes.create_job (orchestrator/http/job_routes.py:96);pack_command (redis/asyncio/connection.py:9) 30",
        f"{ENTRY};run (asyncio/runners.py:44);"
        "JobRoutes.create_job (orchestrator/http/job_routes.py:97);"
        "JobStats._write (orchestrator/store/job_stats.py:5) 20",
        f"{ENTRY};run (asyncio/runners.py:44);CoalescingTransport.flush (plumbing/coalescing.py:12) 40",
        f"{ENTRY};run (asyncio/runners.py:44) 10",
    ]
)


def test_the_summary_counts_self_and_inclusive_frames_and_the_libraries_own_time() -> None:
    profile = summarise(COLLAPSED)
    assert profile["samples"] == 100
    inclusive = {item["frame"]: item["percent"] for item in profile["inclusive_own"]}
    # The entry points (on every stack) are left out; the rest of the project's frames count.
    assert inclusive == {
        "JobRoutes.create_job (orchestrator/http/job_routes.py)": 50.0,  # two lines of one function: one frame
        "CoalescingTransport.flush (plumbing/coalescing.py)": 40.0,
        "JobStats._write (orchestrator/store/job_stats.py)": 20.0,
    }
    library = {item["frame"]: item["percent"] for item in profile["self_library"]}
    assert library == {"pack_command (redis/asyncio/connection.py)": 30.0, "run (asyncio/runners.py)": 10.0}


def test_the_budget_splits_each_process_cpu_per_job_by_its_profile() -> None:
    profiles = {"orchestrator": summarise(COLLAPSED), "worker": {"error": "py-spy failed"}}
    cpu_ms = {"orchestrator": 5.0, "worker": 2.0, "rabbitmq": 2.0, "redis": 0.5, "bench client": 1.0, "all": 10.5}
    plan = budget(profiles, cpu_ms)
    orchestrator = plan["processes"]["orchestrator"]
    assert orchestrator["ms_per_job"] == 5.0
    assert [(item["frame"], item["ms"]) for item in orchestrator["inclusive_own"]] == [
        ("JobRoutes.create_job", 2.5),
        ("CoalescingTransport.flush", 2.0),
        ("JobStats._write", 1.0),
    ]
    assert [(item["frame"], item["ms"]) for item in orchestrator["self_library"]] == [
        ("pack_command", 1.5),
        ("run", 0.5),
    ]
    # No profile, no split: the worker's milliseconds stay with the unprofiled parts.
    assert plan["not_profiled"] == {"worker": 2.0, "rabbitmq": 2.0, "redis": 0.5, "bench client": 1.0}
    text = render_budget(plan)
    assert (
        "orchestrator 5.00 ms/job: JobRoutes.create_job 2.50, CoalescingTransport.flush 2.00, JobStats._write 1.00"
        in text
    )
    assert "self, libraries: pack_command 1.50, run 0.50" in text
    assert "not profiled (ms/job): worker 2.00, rabbitmq 2.00, redis 0.50, bench client 1.00" in text


def test_frames_under_half_a_tenth_of_a_millisecond_per_job_are_left_out_of_the_budget() -> None:
    plan = budget({"orchestrator": summarise(COLLAPSED)}, {"orchestrator": 0.15, "all": 0.15})
    frames = [item["frame"] for item in plan["processes"]["orchestrator"]["inclusive_own"]]
    assert frames == ["JobRoutes.create_job", "CoalescingTransport.flush"]  # 0.075 and 0.06; not _write's 0.03
