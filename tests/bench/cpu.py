"""CPU time each process spends per job: where the machine's cores go during a run.

On a 2-core machine with the brokers co-located, jobs/s is bounded by the CPU all parts use per job,
so this says which part to make cheaper. Read from /proc (user + system time, in clock ticks).
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


@dataclass
class CpuMeter:
    """Snapshots the CPU time of named processes; `per_job` gives milliseconds per job since `start`."""

    own: Mapping[str, int]  # part name -> pid of a process the benchmark started
    _start: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        seconds = {name: cpu_seconds(pid) for name, pid in self.own.items()}
        for name, command in SERVICE_COMMANDS.items():
            seconds[name] = sum(cpu_seconds(pid) for pid in pids_named(command))
        seconds["bench client"] = cpu_seconds(os.getpid())
        return seconds

    def start(self) -> None:
        self._start = self._read()

    def per_job(self, jobs: int) -> dict[str, float]:
        end = self._read()
        spent = {name: 1000.0 * (end[name] - self._start.get(name, 0.0)) / jobs for name in end}
        spent["all"] = sum(spent.values())
        return spent
