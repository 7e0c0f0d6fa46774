"""cancel_and_wait: a stop is a stop, also when the task swallows a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from plumbing.cancellation import cancel_and_wait


async def test_a_task_that_swallows_one_cancel_is_still_stopped() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed > 2:
                    raise  # as redis-py does once, then the next cancel lands in plain code

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, recancel_after=0.01), timeout=5)
    assert task.cancelled() and swallowed == 3


async def test_a_finished_task_is_left_as_it_is() -> None:
    async def done() -> int:
        return 7

    task = asyncio.create_task(done())
    await task
    await cancel_and_wait(task)
    assert task.result() == 7


async def test_a_task_that_ended_with_an_error_raises_it_as_awaiting_it_would() -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="boom"):
        await cancel_and_wait(task)
