"""FairSlots with made-up deliveries, no broker: who gets each slot as it frees."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from workers.runtime.fair_slots import FairSlots, TenantPolicy


class Deliveries:
    """Deliveries waiting on the slots; `started` is the order they got one in."""

    def __init__(self, slots: FairSlots) -> None:
        self.slots = slots
        self.started: list[str] = []
        self.tasks: list[asyncio.Task[bool]] = []

    def arrive(self, tenant: str, name: str, priority: int = 0) -> None:
        async def wait() -> bool:
            granted = await self.slots.acquire(tenant, priority)
            if granted:
                self.started.append(name)
            return granted

        self.tasks.append(asyncio.create_task(wait()))

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def finish(self, tenant: str, times: int = 1) -> None:
        """Free `times` of the tenant's slots, one after another, letting each go to someone."""
        for _ in range(times):
            self.slots.release(tenant)
            await self.settle()

    async def finish_latest(self, times: int) -> None:
        """With one slot: end the delivery that started last, `times` over."""
        for _ in range(times):
            await self.finish(tenant_of(self.started[-1]))


def tenant_of(name: str) -> str:
    return name.split("-")[0]


async def test_a_lone_tenant_gets_every_slot() -> None:
    deliveries = Deliveries(FairSlots(4))
    for i in range(6):
        deliveries.arrive("a", f"a-{i}")
    await deliveries.settle()
    assert deliveries.started == ["a-0", "a-1", "a-2", "a-3"]
    await deliveries.finish("a", 2)
    assert deliveries.started[4:] == ["a-4", "a-5"]


async def test_a_second_tenant_takes_turns_with_a_backlog_instead_of_waiting_behind_it() -> None:
    deliveries = Deliveries(FairSlots(1))
    for i in range(100):
        deliveries.arrive("a", f"a-{i}")
    await deliveries.settle()
    for i in range(3):
        deliveries.arrive("b", f"b-{i}")
    await deliveries.settle()
    await deliveries.finish("a")  # a-0 ends: b's turn
    await deliveries.finish("b")
    await deliveries.finish("a")
    await deliveries.finish("b")
    await deliveries.finish("a")
    assert deliveries.started == ["a-0", "b-0", "a-1", "b-1", "a-2", "b-2"]


async def test_weights_share_the_slots_in_proportion_and_interleaved() -> None:
    slots = FairSlots(1, TenantPolicy(weights={"a": 3}))
    deliveries = Deliveries(slots)
    for i in range(40):
        deliveries.arrive("a", f"a-{i}")
        deliveries.arrive("b", f"b-{i}")
    await deliveries.settle()
    await deliveries.finish_latest(40)
    served = [tenant_of(name) for name in deliveries.started[1:41]]
    assert Counter(served) == {"a": 30, "b": 10}
    # Smooth: b is never kept waiting more than a's weight in turns.
    assert "aaaa" not in "".join(served)


async def test_priority_orders_a_tenants_own_deliveries_not_the_turns() -> None:
    deliveries = Deliveries(FairSlots(1))
    deliveries.arrive("a", "a-first")  # takes the only slot
    await deliveries.settle()
    deliveries.arrive("a", "a-low", priority=1)
    deliveries.arrive("a", "a-high", priority=9)
    deliveries.arrive("a", "a-mid", priority=5)
    deliveries.arrive("a", "a-high-later", priority=9)
    deliveries.arrive("b", "b-low", priority=0)
    await deliveries.settle()
    await deliveries.finish_latest(5)
    # Within a: 9, 9 (in arrival order), 5, 1. Across tenants: b's turn comes despite a's priority 9.
    assert deliveries.started == ["a-first", "b-low", "a-high", "a-high-later", "a-mid", "a-low"]


async def test_a_tenant_at_its_cap_is_passed_over_without_blocking_the_others() -> None:
    slots = FairSlots(4, TenantPolicy(max_running={"a": 2}))
    deliveries = Deliveries(slots)
    for i in range(5):
        deliveries.arrive("a", f"a-{i}")
    await deliveries.settle()
    assert deliveries.started == ["a-0", "a-1"]  # two slots stay free rather than go over a's cap
    deliveries.arrive("b", "b-0")
    deliveries.arrive("b", "b-1")
    deliveries.arrive("b", "b-2")
    await deliveries.settle()
    assert deliveries.started[2:] == ["b-0", "b-1"]
    await deliveries.finish("a")
    assert deliveries.started[4:] == ["a-2"]  # a is under its cap again; b-2 waits for a free slot
    await deliveries.finish("b")
    assert deliveries.started[5:] == ["b-2"]


async def test_a_default_cap_applies_to_every_tenant_not_named() -> None:
    policy = TenantPolicy.from_settings({"*": 2, "big": 5}, {"*": 1, "big": 3})
    assert (policy.weight("big"), policy.weight("small"), policy.cap("big"), policy.cap("small")) == (5, 2, 3, 1)
    deliveries = Deliveries(FairSlots(10, policy))
    for name in ("small-0", "small-1", "big-0", "big-1", "big-2", "big-3"):
        deliveries.arrive(tenant_of(name), name)
    await deliveries.settle()
    assert sorted(deliveries.started) == ["big-0", "big-1", "big-2", "small-0"]


async def test_no_tenant_starves_under_a_steady_stream_from_a_heavy_one() -> None:
    slots = FairSlots(2, TenantPolicy(weights={"heavy": 10}))
    deliveries = Deliveries(slots)
    for i in range(200):
        deliveries.arrive("heavy", f"heavy-{i}")
    await deliveries.settle()
    deliveries.arrive("light", "light-0")
    await deliveries.settle()
    await deliveries.finish_latest(12)
    assert "light-0" in deliveries.started


async def test_stop_tells_every_waiting_delivery_false_and_later_ones_too() -> None:
    slots = FairSlots(1)
    deliveries = Deliveries(slots)
    for name in ("a-0", "a-1", "b-0"):
        deliveries.arrive(tenant_of(name), name)
    await deliveries.settle()
    slots.stop()
    results = await asyncio.gather(*deliveries.tasks)
    assert results == [True, False, False]
    assert slots.waiting() == 0
    assert await slots.acquire("c", 0) is False


async def test_a_waiter_cancelled_before_its_turn_gives_its_place_up() -> None:
    slots = FairSlots(1)
    deliveries = Deliveries(slots)
    deliveries.arrive("a", "a-0")
    deliveries.arrive("a", "a-1")
    deliveries.arrive("a", "a-2")
    await deliveries.settle()
    deliveries.tasks[1].cancel()
    await deliveries.settle()
    assert slots.waiting("a") == 1
    await deliveries.finish("a")
    assert deliveries.started == ["a-0", "a-2"]
    assert slots.active == 1
    with pytest.raises(asyncio.CancelledError):
        await deliveries.tasks[1]
