"""plumbing.process: the collector settings every Baton process runs with."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from plumbing.process import FIRST_GENERATION_THRESHOLD, run_loop, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_startup_objects_are_frozen_and_the_first_threshold_raised(restored_gc: None) -> None:
    _, second, third = gc.get_threshold()
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (FIRST_GENERATION_THRESHOLD, second, third)


def test_run_loop_runs_the_coroutine_with_the_tuned_collector(restored_gc: None) -> None:
    async def main() -> int:
        return gc.get_threshold()[0]

    assert run_loop(main()) == FIRST_GENERATION_THRESHOLD
