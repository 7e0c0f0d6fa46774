"""The tests' one way to wait: the answer that did is returned, a wait that runs out says what and why."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.polling import NotReached, eventually, eventually_blocking, poll


async def test_poll_returns_the_first_answer_that_will_do() -> None:
    counter = itertools.count()

    async def probe() -> int:
        return next(counter)

    assert await poll(probe, lambda n: n >= 3, every=0) == 3


async def test_eventually_takes_plain_and_async_checks() -> None:
    ticks = itertools.count()

    async def third_time() -> bool:
        return next(ticks) >= 2

    await eventually(lambda: True)
    await eventually(third_time, every=0)


async def test_a_wait_that_runs_out_names_what_it_awaited_and_the_last_answer() -> None:
    async def depth() -> int:
        return 7

    with pytest.raises(NotReached, match=r"an empty queue: not reached within 0\.1 s; last seen: 7") as raised:
        await poll(depth, lambda n: n == 0, within=0.1, what="an empty queue")
    assert raised.value.last == 7


async def test_without_a_description_a_lambda_is_named_by_its_source() -> None:
    queue: list[int] = []
    with pytest.raises(NotReached, match=r"lambda: len\(queue\) == 1"):
        await eventually(lambda: len(queue) == 1, within=0.1)


async def test_a_probe_that_never_answers_is_cut_at_the_deadline() -> None:
    async def hangs() -> int:
        await asyncio.sleep(60)
        return 0

    with pytest.raises(NotReached, match="nothing"):
        await poll(hangs, lambda n: n == 0, within=0.1, what="an answer")


async def test_a_probes_own_timeout_is_not_taken_for_the_deadline() -> None:
    async def times_out() -> int:
        raise TimeoutError("the probe's own")

    with pytest.raises(TimeoutError, match="the probe's own"):
        await poll(times_out, lambda n: n == 0, within=5.0, what="an answer")


def test_the_blocking_wait_says_what_it_awaited() -> None:
    eventually_blocking(lambda: True, what="at once")
    with pytest.raises(NotReached, match=r"a port to open: not reached within 0\.05 s"):
        eventually_blocking(lambda: False, within=0.05, every=0.01, what="a port to open")
