"""The settle decision, case by case, and `settle` carrying it out: no broker needed."""

from __future__ import annotations

import logging
from typing import cast

import aiormq.exceptions
import pytest
from aio_pika.abc import AbstractIncomingMessage

from workers.runtime.settle import Happened, Settlement, decide, settle

CASES = [
    # Acked: what replaces the delivery is confirmed, or nothing has to.
    (Happened.ALREADY_FINISHED, Settlement.ACK),
    (Happened.OUTCOME_PUBLISHED, Settlement.ACK),
    (Happened.NEXT_ATTEMPT_PUBLISHED, Settlement.ACK),
    (Happened.DEAD_LETTERED, Settlement.ACK),
    (Happened.HANDED_BACK, Settlement.ACK),
    # Kept: nothing confirmed stands for it yet.
    (Happened.PUBLISH_FAILED, Settlement.REQUEUE),
    (Happened.INTERRUPTED, Settlement.REQUEUE),
    # Neither runnable nor parkable with its reason: the queue's dead-letter exchange takes it.
    (Happened.PARK_FAILED, Settlement.REJECT),
]


@pytest.mark.parametrize(("happened", "expected"), CASES)
def test_what_happened_decides_the_settlement(happened: Happened, expected: Settlement) -> None:
    assert decide(happened) is expected


def test_every_case_is_in_the_table() -> None:
    assert {happened for happened, _ in CASES} == set(Happened)


class FakeMessage:
    """Records which settling operation was called; `fails` makes it raise as a closed channel does."""

    message_id = "task-1"

    def __init__(self, *, fails: bool = False) -> None:
        self.calls: list[str] = []
        self._fails = fails

    async def _record(self, call: str) -> None:
        self.calls.append(call)
        if self._fails:
            raise aiormq.exceptions.ChannelInvalidStateError("channel closed")

    async def ack(self) -> None:
        await self._record("ack")

    async def nack(self, *, requeue: bool) -> None:
        await self._record(f"nack(requeue={requeue})")

    async def reject(self, *, requeue: bool) -> None:
        await self._record(f"reject(requeue={requeue})")


@pytest.mark.parametrize(
    ("settlement", "call"),
    [
        (Settlement.ACK, "ack"),
        (Settlement.REQUEUE, "nack(requeue=True)"),
        (Settlement.REJECT, "reject(requeue=False)"),
    ],
)
async def test_settle_carries_out_one_operation(settlement: Settlement, call: str) -> None:
    message = FakeMessage()
    assert await settle(cast(AbstractIncomingMessage, message), settlement)
    assert message.calls == [call]


async def test_a_refused_settle_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    message = FakeMessage(fails=True)
    with caplog.at_level(logging.WARNING, logger="workers.runtime.settle"):
        assert not await settle(cast(AbstractIncomingMessage, message), Settlement.ACK)
    assert message.calls == ["ack"]
    assert "the broker will redeliver it" in caplog.text
