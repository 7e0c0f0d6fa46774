"""SingleFlight: concurrent callers of one key share one call, its value or its error."""

from __future__ import annotations

import asyncio

import pytest

from plumbing.single_flight import SingleFlight


class Reads:
    def __init__(self) -> None:
        self.count = 0
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def read(self) -> int:
        self.count += 1
        number = self.count
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return number


async def callers(flight: SingleFlight[str, int], key: str, reads: Reads, count: int) -> list[asyncio.Task[int]]:
    """`count` callers of `key`, each waiting in the flight by the time this returns."""
    waiting = [asyncio.create_task(flight.run(key, reads.read)) for _ in range(count)]
    await asyncio.sleep(0)
    return waiting


async def test_concurrent_callers_share_one_call_then_the_next_caller_calls_again() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    reads = Reads()
    waiting = await callers(flight, "routes", reads, 50)
    reads.release.set()
    assert await asyncio.gather(*waiting) == [1] * 50
    assert reads.count == 1
    assert await flight.run("routes", reads.read) == 2


async def test_keys_are_apart() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    reads = Reads()
    a = asyncio.create_task(flight.run("a", reads.read))
    b = asyncio.create_task(flight.run("b", reads.read))
    await asyncio.sleep(0)
    reads.release.set()
    assert sorted(await asyncio.gather(a, b)) == [1, 2]


async def test_an_error_reaches_every_waiter_and_the_next_caller_tries_again() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    reads = Reads()
    reads.fail = ConnectionError("down")
    waiting = await callers(flight, "k", reads, 3)
    reads.release.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    reads.fail = None
    assert await flight.run("k", reads.read) == 2


async def test_a_cancelled_waiter_leaves_the_call_to_the_others() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    reads = Reads()
    first, second = await callers(flight, "k", reads, 2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    reads.release.set()
    assert await second == 1
    assert reads.count == 1


async def test_forget_makes_the_next_caller_call_afresh() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    reads = Reads()
    old = asyncio.create_task(flight.run("k", reads.read))
    await asyncio.sleep(0)
    flight.forget("k")
    new = asyncio.create_task(flight.run("k", reads.read))
    await asyncio.sleep(0)
    reads.release.set()
    assert (await old, await new) == (1, 2)
