"""The slots of one worker process, shared fairly among tenants.

Deliveries wait for a slot in groups, one per tenant. Within a group the highest AMQP priority goes
first, then the earliest arrival. Across groups a free slot goes by smooth weighted round robin
(nginx's): every group with a delivery waiting earns its weight in credit, the richest takes the slot
and pays the sum of the weights earned (a tie goes to the group served longest ago). While groups
keep waiting each gets slots in proportion to its weight, interleaved rather than in bursts, and none
starves. A group with nothing waiting drops its credit, so a tenant cannot bank turns while idle.
A group at its cap of running tasks is passed over without holding up the others.

Priorities are strict within a tenant only: across tenants fairness comes first, so one tenant's
priority-9 backlog does not take another tenant's turns.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from workers.config import EVERY_OTHER_TENANT

DEFAULT_WEIGHT: Final[int] = 1
UNATTRIBUTED: Final[str] = ""  # the group of deliveries that name no tenant (never a valid tenant id)


@dataclass(frozen=True)
class TenantPolicy:
    """Weights and caps on running tasks per tenant; a tenant not named gets the defaults."""

    weights: Mapping[str, int] = field(default_factory=dict)
    max_running: Mapping[str, int] = field(default_factory=dict)
    default_weight: int = DEFAULT_WEIGHT
    default_max_running: int | None = None  # None: no cap beyond the process's concurrency

    @classmethod
    def from_settings(cls, weights: Mapping[str, int], max_running: Mapping[str, int]) -> TenantPolicy:
        """From `tenant: n` mappings in which `*` stands for every tenant not named."""
        weights, max_running = dict(weights), dict(max_running)
        return cls(
            weights=weights,
            max_running=max_running,
            default_weight=weights.pop(EVERY_OTHER_TENANT, DEFAULT_WEIGHT),
            default_max_running=max_running.pop(EVERY_OTHER_TENANT, None),
        )

    def weight(self, tenant: str) -> int:
        return self.weights.get(tenant, self.default_weight)

    def cap(self, tenant: str) -> int | None:
        return self.max_running.get(tenant, self.default_max_running)


@dataclass
class _Group:
    weight: int
    cap: int | None
    waiting: list[tuple[int, int, asyncio.Future[bool]]] = field(default_factory=list)  # (-priority, arrival, ...)
    running: int = 0
    credit: int = 0
    served_at: int = -1  # when it last got a slot (a count of grants): ties go to the longest unserved

    @property
    def eligible(self) -> bool:
        return bool(self.waiting) and (self.cap is None or self.running < self.cap)


class FairSlots:
    def __init__(self, capacity: int, policy: TenantPolicy | None = None) -> None:
        self._capacity = capacity
        self._policy = policy or TenantPolicy()
        self._groups: dict[str, _Group] = {}
        self._active = 0
        self._arrivals = itertools.count()
        self._grants = itertools.count()
        self._stopped = False

    @property
    def active(self) -> int:
        return self._active

    def waiting(self, tenant: str | None = None) -> int:
        """Deliveries waiting for a slot: one tenant's, or all."""
        groups = self._groups.values() if tenant is None else [self._groups[tenant]] if tenant in self._groups else []
        return sum(1 for group in groups for _, _, future in group.waiting if not future.done())

    async def acquire(self, tenant: str, priority: int) -> bool:
        """Wait for a slot; True once it is this delivery's, False when the slots stopped first."""
        if self._stopped:
            return False
        group = self._groups.get(tenant)
        if group is None:
            group = self._groups[tenant] = _Group(self._policy.weight(tenant), self._policy.cap(tenant))
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        heapq.heappush(group.waiting, (-priority, next(self._arrivals), future))
        self._dispatch()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result():
                self.release(tenant)  # granted in the same turn as the cancel: give it back
            else:
                future.cancel()  # skipped when its turn comes
            raise

    def release(self, tenant: str) -> None:
        group = self._groups[tenant]
        group.running -= 1
        self._active -= 1
        self._dispatch()

    def stop(self) -> None:
        """Every delivery still waiting is told False (it never started); later acquires too."""
        self._stopped = True
        for group in self._groups.values():
            for _, _, future in group.waiting:
                if not future.done():
                    future.set_result(False)
            group.waiting.clear()

    def _dispatch(self) -> None:
        while self._active < self._capacity and not self._stopped:
            tenant = self._next_group()
            if tenant is None:
                break
            group = self._groups[tenant]
            _, _, future = heapq.heappop(group.waiting)
            if future.done():  # cancelled while waiting
                continue
            future.set_result(True)
            group.served_at = next(self._grants)
            group.running += 1
            self._active += 1
        self._forget_idle()

    def _next_group(self) -> str | None:
        for group in self._groups.values():
            while group.waiting and group.waiting[0][2].done():
                heapq.heappop(group.waiting)
        eligible = [(tenant, group) for tenant, group in self._groups.items() if group.eligible]
        if not eligible:
            return None
        if len(eligible) == 1:
            return eligible[0][0]
        total = 0
        for _, group in eligible:
            group.credit += group.weight
            total += group.weight
        tenant, chosen = max(eligible, key=lambda item: (item[1].credit, -item[1].served_at))
        chosen.credit -= total
        return tenant

    def _forget_idle(self) -> None:
        # Tenants come and go: a group with nothing waiting and nothing running is dropped, credit and all.
        for tenant in [t for t, g in self._groups.items() if not g.waiting and not g.running]:
            del self._groups[tenant]
        for group in self._groups.values():
            if not group.waiting:
                group.credit = 0
