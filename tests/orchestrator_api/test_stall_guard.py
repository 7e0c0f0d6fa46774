import asyncio

from orchestrator.stall_guard import StallGuard


async def test_a_tripped_guard_refuses_until_a_probe_answers_in_time() -> None:
    answering = asyncio.Event()
    probes = 0

    async def probe() -> None:
        nonlocal probes
        probes += 1
        if not answering.is_set():
            await asyncio.sleep(10)  # a black-holed link: no answer

    guard = StallGuard(probe, probe_timeout=0.05, interval=0.01)
    assert not guard.stalled
    guard.trip()
    guard.trip()  # tripping again while stalled starts no second prober
    await asyncio.sleep(0.2)
    assert guard.stalled and probes >= 2
    answering.set()
    for _ in range(200):
        if not guard.stalled:
            break
        await asyncio.sleep(0.01)
    assert not guard.stalled
    await guard.close()


async def test_close_stops_the_prober() -> None:
    async def never() -> None:
        await asyncio.sleep(10)

    guard = StallGuard(never, probe_timeout=0.01, interval=0.01)
    guard.trip()
    await guard.close()
    assert not guard.stalled
