"""orchestrator.process_group's parent on stand-in children (small Python programs): how it stops them,
what it does with a child that ignores the stop or exits on its own, and the status it ends with.
The real orchestrator children are in tests/e2e/test_process_group.py."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from orchestrator.process_group import PortTaken, ProcessGroup, check_port_free, watch_parent
from tests.polling import eventually

pytestmark = pytest.mark.timeout(60)

# Runs until SIGTERM (exit 0), or ignores it when told to; a file named by its pid says its handler is set.
CHILD = """
import os, signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
open(os.path.join(sys.argv[2], str(os.getpid())), "w").close()
time.sleep(60)
sys.exit(3)
"""


def group(ready: Path, behaviour: str = "obey", grace: float = 5) -> ProcessGroup:
    return ProcessGroup(2, [sys.executable, "-c", CHILD, behaviour, str(ready)], dict(os.environ), grace)


async def started(members: ProcessGroup, ready: Path) -> asyncio.Task[int]:
    running = asyncio.create_task(members.run())
    await eventually(lambda: len(list(ready.iterdir())) == members.count, within=30)
    return running


async def test_a_stop_reaches_every_child_and_ends_with_0(tmp_path: Path) -> None:
    members = group(tmp_path)
    running = await started(members, tmp_path)
    members.stop(signal.SIGTERM)
    assert await asyncio.wait_for(running, 10) == 0
    assert [child.returncode for child in members.children] == [0, 0]


async def test_a_child_that_exits_on_its_own_stops_the_others_and_ends_with_1(tmp_path: Path) -> None:
    members = group(tmp_path)
    running = await started(members, tmp_path)
    members.children[0].kill()
    assert await asyncio.wait_for(running, 10) == 1
    assert members.children[1].returncode == 0  # stopped by the parent's SIGTERM


async def test_a_child_that_ignores_the_stop_is_killed_after_the_grace(tmp_path: Path) -> None:
    members = group(tmp_path, "ignore", grace=1.0)
    running = await started(members, tmp_path)
    t0 = time.monotonic()
    members.stop(signal.SIGTERM)
    assert await asyncio.wait_for(running, 10) == 1
    assert 1.0 <= time.monotonic() - t0 < 5
    assert [child.returncode for child in members.children] == [-signal.SIGKILL, -signal.SIGKILL]


async def test_a_port_in_use_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortTaken, match=f"cannot listen on 127.0.0.1:{port}: "):
            await check_port_free("127.0.0.1", port)
    await check_port_free("127.0.0.1", port)  # free again


async def test_the_parent_watch_fires_once_the_parent_is_someone_else() -> None:
    stop = asyncio.Event()
    await asyncio.wait_for(watch_parent(os.getppid() + 1_000_000, stop, every=0.01), 5)
    assert stop.is_set()
    stop.clear()
    watching = asyncio.create_task(watch_parent(os.getppid(), stop, every=0.01))
    await asyncio.sleep(0.1)
    assert not stop.is_set() and not watching.done()
    watching.cancel()
