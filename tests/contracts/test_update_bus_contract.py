"""What the job side relies on from an UpdateBus, checked on FakeUpdateBus and on UpdateBus over Redis."""

from __future__ import annotations

import asyncio

from orchestrator.models import JobUpdate, job_update
from tests.contracts.subjects import BusPair
from tests.polling import eventually


def update(job: str, seq: int, status: str = "running") -> JobUpdate:
    return job_update("t", job, seq, status, {"event": "task_status_update", "seq": seq, "data": {"status": status}})


async def test_an_announced_update_reaches_this_replicas_listeners_at_once_and_the_others_soon(
    bus_pair: BusPair,
) -> None:
    first, second = bus_pair
    here: list[JobUpdate] = []
    there: list[JobUpdate] = []
    first.add_listener(here.append)
    remove = second.add_listener(there.append)
    sent = update("j", 2)
    first.announce(sent)
    assert here == [sent]  # before any await: the announcing replica's clients are not held back
    await eventually(lambda: len(there) == 1)
    assert there == [sent]

    remove()
    await first.publish(update("j", 3))
    assert len(here) == 2
    await asyncio.sleep(0.2)
    assert there == [sent]  # removed listeners hear nothing more, and nobody hears an update twice
    assert len(here) == 2


async def test_a_windows_updates_reach_every_replica_in_order(bus_pair: BusPair) -> None:
    first, second = bus_pair
    here: list[JobUpdate] = []
    there: list[JobUpdate] = []
    first.add_listener(here.append)
    second.add_listener(there.append)
    window = [update("a", 2), update("b", 2), update("a", 3, "completed")]
    first.announce_many(window)
    assert here == window  # at once, in one go
    await eventually(lambda: len(there) == 3)
    assert there == window


async def test_a_broken_listener_does_not_starve_the_others(bus_pair: BusPair) -> None:
    first, _ = bus_pair
    got: list[JobUpdate] = []

    def broken(_: JobUpdate) -> None:
        raise RuntimeError("listener bug")

    first.add_listener(broken)
    first.add_listener(got.append)
    await first.publish(update("j", 2))
    assert len(got) == 1


async def test_a_watch_sees_its_jobs_terminal_update_from_either_replica(bus_pair: BusPair) -> None:
    first, second = bus_pair
    with first.watch("t", "mine") as here, second.watch("t", "mine") as there, first.watch("t", "other") as other:
        first.announce(update("mine", 2))
        assert await here.terminal(0.1) is None  # not terminal yet
        done = update("mine", 3, "completed")
        await first.publish(done)
        assert await here.terminal(1) == done
        assert await there.terminal(5) == done
        assert await other.terminal(0.1) is None  # another job's outcome wakes nobody else


async def test_a_watch_entered_before_the_outcome_keeps_it_until_asked(bus_pair: BusPair) -> None:
    first, _ = bus_pair
    with first.watch("t", "j") as watch:
        done = update("j", 2, "failed")
        first.announce(done)
        await asyncio.sleep(0.05)
        assert await watch.terminal(0) == done
