"""`python -m orchestrator --processes 2`, a real process group on one port: both children serve, the
WebSocket fan-out crosses them, and the parent stops (and is stopped by) its children as it should.

Which child holds a connection is read from /proc: the server side of each established TCP
connection on the group's port is a socket inode that one child has among its file descriptors.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.harness import BatonSystem, Process, TerminalCollector, free_port, wait_for_workers, wait_healthy
from tests.e2e.test_end_to_end import embedding_job, post_jobs
from tests.polling import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

STARTED = re.compile(r"orchestrator process \d+ of \d+ started: pid (\d+)")
ESTABLISHED = "01"  # the state column of /proc/net/tcp


async def start_group(system: BatonSystem, count: int = 2) -> tuple[Process, str, list[int]]:
    """The parent, the base URL, and the children's pids as the parent logged them."""
    port = free_port()
    parent = system.spawn(
        "orchestrator-group", ["-m", "orchestrator", "--processes", str(count)], ORCHESTRATOR_PORT=str(port)
    )
    base_url = f"http://127.0.0.1:{port}"
    await wait_healthy(base_url, parent)

    async def log() -> str:
        return parent.log_path.read_text(errors="replace")

    # Healthy means one child answers; each child listens once its log says so.
    text = await poll(log, lambda text: text.count("orchestrator listening on") == count, within=60, what="all listen")
    pids = [int(pid) for pid in STARTED.findall(text)]
    assert len(set(pids)) == count, text
    return parent, base_url, pids


def connection_owners(port: int, pids: list[int]) -> dict[int, int]:
    """Client port -> pid of the child holding the server side of that established connection."""
    by_inode: dict[str, int] = {}  # inode -> the connection's client port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == port:
                by_inode[inode] = int(remote.rsplit(":", 1)[1], 16)
    owners: dict[int, int] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            inode = target.removeprefix("socket:[").removesuffix("]")
            if target.startswith("socket:[") and inode in by_inode:
                owners[by_inode[inode]] = pid
    return owners


def port_of(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


async def metrics_of_each(base_url: str, pids: list[int], attempts: int = 40) -> dict[int, str]:
    """GET /metrics of every child: fresh connections until each child has answered one."""
    found: dict[int, str] = {}
    for _ in range(attempts):
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(base_url))
        owner = connection_owners(port_of(base_url), pids).get(writer.get_extra_info("sockname")[1])
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        text = (await reader.read()).decode()
        writer.close()
        if owner is not None:
            found.setdefault(owner, text)
        if len(found) == len(pids):
            break
    return found


def completed_applied(metrics: str) -> float:
    match = re.search(r'^baton_events_applied_total\{event="task_completed"\} (\S+)$', metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_both_children_accept_fresh_connections(system: BatonSystem) -> None:
    _, base_url, pids = await start_group(system)
    assert len(set(pids)) == 2
    connections = [await asyncio.open_connection("127.0.0.1", port_of(base_url)) for _ in range(40)]
    try:
        for reader, writer in connections:  # answered: accepted by a child, not waiting in a backlog
            writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: test\r\n\r\n")
            await writer.drain()
            assert (await reader.readline()).startswith(b"HTTP/1.1 200"), "a child did not answer"
        owners = connection_owners(port_of(base_url), pids)
        assert len(owners) == 40
        assert set(owners.values()) == set(pids), f"40 connections all reached one child: {owners}"
    finally:
        for _, writer in connections:
            writer.close()


async def test_websockets_on_either_child_see_every_job_once(system: BatonSystem) -> None:
    parent, base_url, pids = await start_group(system)
    system.start_worker("embedding")
    await wait_for_workers(base_url, ["embedding"])
    tenant = system.tenants[0]
    before = {pid: completed_applied(text) for pid, text in (await metrics_of_each(base_url, pids)).items()}
    assert set(before) == set(pids)
    async with aiohttp.ClientSession() as session:
        collectors: list[TerminalCollector] = []
        on: dict[int, list[TerminalCollector]] = {pid: [] for pid in pids}
        while len(collectors) < 40 and (len(collectors) < 6 or not all(on.values())):
            collector = await TerminalCollector.connect(session, base_url, tenant)
            collectors.append(collector)
            owner = connection_owners(port_of(base_url), pids)[collector.ws.get_extra_info("sockname")[1]]
            on[owner].append(collector)
        assert all(on.values()), f"no WebSocket reached one of the children: { {p: len(c) for p, c in on.items()} }"

        # Every POST on a fresh connection: the 200 jobs are created by both children.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as posting:
            started = await post_jobs(posting, base_url, tenant, [embedding_job(i) for i in range(200)], concurrency=16)
        assert len(started) == 200
        for collector in collectors:
            assert await collector.wait_for(set(started), timeout=90) == set()
        await asyncio.sleep(0.5)  # room for a duplicate to show up
        for collector in collectors:
            await collector.close()
            mine = {job: events for job, events in collector.terminal.items() if job in started}
            assert {job: len(events) for job, events in mine.items() if len(events) != 1} == {}
            assert {events[0][1]["event"] for events in mine.values()} == {"task_completed"}

    after = {pid: completed_applied(text) for pid, text in (await metrics_of_each(base_url, pids)).items()}
    # Both children applied completions of these jobs, and the clients of each saw all of them: the ones
    # the other child applied came over the update bus.
    assert all(after[pid] > before[pid] for pid in pids), (before, after)
    assert parent.popen.poll() is None


async def test_sigterm_to_the_parent_stops_every_child_and_exits_0(system: BatonSystem) -> None:
    parent, _, pids = await start_group(system)
    t0 = time.monotonic()
    parent.popen.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(parent.popen.wait, 30) == 0, parent.log_tail()
    assert time.monotonic() - t0 < 30
    assert not [pid for pid in pids if alive(pid)], "a child outlived its parent"
    assert parent.log_tail().count("stopped") >= len(pids)


async def test_a_child_killed_stops_the_group_with_a_failure(system: BatonSystem) -> None:
    parent, _, pids = await start_group(system)
    os.kill(pids[0], signal.SIGKILL)
    assert await asyncio.to_thread(parent.popen.wait, 30) == 1, parent.log_tail()
    assert not alive(pids[1]), "the other child still runs"
    assert f"pid {pids[0]} exited on its own" in parent.log_tail()


async def test_children_stop_when_the_parent_is_killed(system: BatonSystem) -> None:
    parent, base_url, pids = await start_group(system)
    parent.popen.kill()
    parent.popen.wait()

    async def running() -> list[int]:
        return [pid for pid in pids if alive(pid)]

    await poll(running, lambda left: left == [], within=30, what="the orphaned children stopped")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port_of(base_url)), timeout=2).close()


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie (an orphan waiting for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_port_already_taken_is_refused(system: BatonSystem) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        parent = system.spawn(
            "orchestrator-group", ["-m", "orchestrator", "--processes", "2"], ORCHESTRATOR_PORT=str(port)
        )
        assert await asyncio.to_thread(parent.popen.wait, 60) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in parent.log_tail()
    assert "started: pid" not in parent.log_tail()
