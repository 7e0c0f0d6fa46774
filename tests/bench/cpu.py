"""CPU time and write syscalls each process spends per job: where the machine's cores go during a run.

On a 2-core machine with the brokers co-located, jobs/s is bounded by the CPU all parts use per job,
so this says which part to make cheaper. Read from /proc: user + system time (clock ticks) and
the write syscalls of /proc/<pid>/io (a socket write on loopback costs the sender the whole TCP
path, so their count matters as much as the bytes). That count holds write and writev (asyncio,
uvloop, RabbitMQ, Redis) but not send or sendto, which blocking Python sockets use (pika, redis-py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# Shared services found by their process name; every matching process counts (one of each runs here).
SERVICE_COMMANDS = {"rabbitmq": "beam.smp", "redis": "redis-server"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0.0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces: skip past it
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def write_syscalls(pid: int) -> int:
    """Write syscalls (write, writev; not send, sendto) of one process so far (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("syscw:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def pids_named(command: str) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == command:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def with_descendants(pid: int) -> list[int]:
    """The process and every process below it (a Dramatiq CLI forks its workers; so may an orchestrator)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending += children.get(current, [])
    return found


@dataclass
class CpuMeter:
    """Snapshots the CPU time of named processes; `per_job` gives milliseconds per job since `start`."""

    own: Mapping[str, int]  # part name -> pid of a process the benchmark started (its children count too)
    _start: dict[str, tuple[float, int]] = field(default_factory=dict)

    def _read(self) -> dict[str, tuple[float, int]]:
        pids = {name: with_descendants(pid) for name, pid in self.own.items()}
        pids.update({name: pids_named(command) for name, command in SERVICE_COMMANDS.items()})
        pids["bench client"] = [os.getpid()]
        return {
            name: (sum(cpu_seconds(pid) for pid in group), sum(write_syscalls(pid) for pid in group))
            for name, group in pids.items()
        }

    def start(self) -> None:
        self._start = self._read()

    def per_job(self, jobs: int) -> dict[str, dict[str, float]]:
        """Since `start`, per job: CPU milliseconds of each part (and their sum, "all") under "cpu_ms",
        write syscalls of each part under "writes"."""
        end = self._read()
        begin = {name: self._start.get(name, (0.0, 0)) for name in end}
        cpu = {name: 1000.0 * (end[name][0] - begin[name][0]) / jobs for name in end}
        cpu["all"] = sum(cpu.values())
        writes = {name: (end[name][1] - begin[name][1]) / jobs for name in end}
        return {"cpu_ms": cpu, "writes": writes}
