import asyncio

import pytest

from orchestrator.broker.stall_guard import LinkStalled, StallGuard


async def silent() -> None:
    await asyncio.sleep(10)  # a black-holed link: no answer


async def test_a_silent_link_fails_early_and_refuses_until_a_probe_answers() -> None:
    answering = asyncio.Event()
    probes = 0

    async def probe() -> None:
        nonlocal probes
        probes += 1
        if not answering.is_set():
            await silent()

    guard = StallGuard(probe, stall_after=0.1, probe_timeout=0.05, interval=0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(LinkStalled):
        await guard.guard(silent(), timeout=5)
    assert loop.time() - started < 1  # the silence, not the 5 s timeout
    assert guard.stalled
    await asyncio.sleep(0.2)
    assert guard.stalled and probes >= 2
    answering.set()
    for _ in range(200):
        if not guard.stalled:
            break
        await asyncio.sleep(0.01)
    assert not guard.stalled
    await guard.close()


async def test_a_busy_link_that_keeps_answering_never_trips() -> None:
    guard = StallGuard(silent, stall_after=0.15, probe_timeout=0.05, interval=0.01)

    async def confirmed_after(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    # One slow confirm (0.6 s, four times stall_after) while others keep coming every 0.05 s.
    slow = asyncio.ensure_future(guard.guard(confirmed_after(0.6), timeout=5))
    for _ in range(14):
        assert await guard.guard(confirmed_after(0.05), timeout=5) == 0.05
    assert await slow == 0.6
    assert not guard.stalled
    with pytest.raises(TimeoutError) as raised:
        await guard.guard(confirmed_after(0.4), timeout=0.1)  # past its own timeout, link not silent
    assert not isinstance(raised.value, LinkStalled) and not guard.stalled
    await guard.close()


async def test_close_stops_the_prober() -> None:
    guard = StallGuard(silent, stall_after=0.01, probe_timeout=0.01, interval=0.01)
    guard.trip()
    await guard.close()
    assert not guard.stalled
