"""Optional py-spy sampling of Baton's processes under load: where their CPU time goes, as text and SVG.

`--profile N` samples the orchestrator and the worker (and any process they fork) for N seconds during
a full-speed run of its own, and reports the functions most often on CPU (self) and the project
functions most often on the stack (inclusive); with `--flamegraphs LABEL` a second py-spy per process
also saves its flame graph as SVG. `budget` turns the shares into CPU milliseconds per job, from the
CPU meter of the same run. Needs py-spy (the `bench` extra) and permission to ptrace (root or
CAP_SYS_PTRACE).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.e2e.harness import BatonSystem

OWN_PACKAGES = ("orchestrator/", "workers/", "protocol/", "plumbing/")
# The entry points are on every stack: left out of the inclusive list, they say nothing.
ENTRY_POINTS = ("__main__.py", "run_loop (plumbing/process.py)")
TOP = 12
BUDGET_FLOOR_MS = 0.05  # a frame under half of 0.1 ms per job is left out of the budget
SAMPLE_RATE = 100
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def is_own(frame: str) -> bool:
    """A frame of the project's code: py-spy names it `function (package/module.py)`."""
    return any(f"({package}" in frame for package in OWN_PACKAGES)


def summarise(collapsed: str) -> dict[str, Any]:
    """Top self and inclusive functions from py-spy's raw (collapsed stack) output."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        items = stack.split(";")
        if items[0].startswith("process "):  # with --subprocesses each stack starts with its process
            items = items[1:]
        frames = [_LINE.sub(")", frame) for frame in items]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            if is_own(frame) and not any(entry in frame for entry in ENTRY_POINTS):
                inclusive[frame] += count

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"frame": f, "percent": 100.0 * c / total} for f, c in counter.most_common(TOP)]

    library = Counter({frame: count for frame, count in self_counts.items() if not is_own(frame)})
    return {
        "samples": total,
        "self": top(self_counts),
        "inclusive_own": top(inclusive),
        "self_library": top(library),
    }


def budget(profiles: dict[str, dict[str, Any]], cpu_ms: dict[str, float]) -> dict[str, Any]:
    """Each profiled process's CPU ms per job (from the meter of the profiled run) split by its profile:
    the project frames' inclusive shares (they nest: they do not add up) and the library frames' self
    shares; the parts with no Python profile (RabbitMQ, Redis, the benchmark's client) as a total each."""
    processes: dict[str, Any] = {}
    for name, profile in profiles.items():
        if name not in cpu_ms or "error" in profile:
            continue
        total = cpu_ms[name]

        def split(items: list[dict[str, Any]], total: float = total) -> list[dict[str, Any]]:
            shares = [{"frame": short(item["frame"]), "ms": total * item["percent"] / 100} for item in items]
            return [share for share in shares if share["ms"] >= BUDGET_FLOOR_MS]

        processes[name] = {
            "ms_per_job": total,
            "inclusive_own": split(profile["inclusive_own"]),
            "self_library": split(profile["self_library"]),
        }
    others = {name: ms for name, ms in cpu_ms.items() if name not in processes and name != "all"}
    return {"processes": processes, "not_profiled": others, "all": cpu_ms.get("all", float("nan"))}


def short(frame: str) -> str:
    """`JobRoutes.create_job (orchestrator/http/job_routes.py)` -> `JobRoutes.create_job`."""
    return frame.split(" (", 1)[0]


def render_budget(plan: dict[str, Any]) -> str:
    lines = [f"budget: CPU ms per job of the profiled run, all processes {plan['all']:.2f} (frames from 0.05 ms)"]
    for name, part in plan["processes"].items():
        own = ", ".join(f"{item['frame']} {item['ms']:.2f}" for item in part["inclusive_own"]) or "-"
        library = ", ".join(f"{item['frame']} {item['ms']:.2f}" for item in part["self_library"]) or "-"
        lines.append(f"  {name} {part['ms_per_job']:.2f} ms/job: {own}")
        lines.append(f"  {' ' * len(name)} self, libraries: {library}")
    if plan["not_profiled"]:
        rest = ", ".join(f"{name} {ms:.2f}" for name, ms in plan["not_profiled"].items())
        lines.append(f"  not profiled (ms/job): {rest}")
    return "\n".join(lines)


def render(profiles: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for name, profile in profiles.items():
        if "error" in profile:
            lines.append(f"profile {name}: {profile['error']}")
            continue
        lines.append(f"profile {name}: {profile['samples']} samples on CPU")
        if "flamegraph" in profile:
            lines.append(f"  flame graph: {profile['flamegraph']}")
        for title, key in (("self", "self"), ("inclusive (project code)", "inclusive_own")):
            lines.append(f"  top {title}:")
            lines += [f"    {item['percent']:5.1f}%  {item['frame']}" for item in profile[key]]
    return "\n".join(lines)


class Profiler:
    @staticmethod
    @asynccontextmanager
    async def maybe(
        seconds: float, system: BatonSystem, results: dict[str, Any], flamegraphs: Path | None = None
    ) -> AsyncIterator[None]:
        """Samples every Baton process for `seconds` while the body runs; no-op when seconds <= 0.
        With `flamegraphs` (a path prefix), each process's flame graph goes to `<prefix>-<process>.svg`."""
        binary = py_spy()
        if seconds <= 0:
            yield
            return
        if binary is None:
            results["profile"] = {"all": {"error": "py-spy not installed (the `bench` extra has it)"}}
            yield
            return
        directory = Path(tempfile.mkdtemp(prefix="baton-bench-profile-"))
        if flamegraphs is not None:
            flamegraphs.parent.mkdir(parents=True, exist_ok=True)
        running: dict[str, tuple[asyncio.subprocess.Process, Path]] = {}
        drawing: dict[str, tuple[asyncio.subprocess.Process, Path]] = {}
        for process in system.processes:
            raw = directory / f"{process.name}.txt"
            running[process.name] = (await _record(binary, "raw", raw, process.popen.pid, seconds), raw)
            if flamegraphs is not None:
                svg = flamegraphs.with_name(f"{flamegraphs.name}-{process.name}.svg")
                drawing[process.name] = (await _record(binary, "flamegraph", svg, process.popen.pid, seconds), svg)
        try:
            yield
        finally:
            profiles: dict[str, dict[str, Any]] = {}
            for name, (spy, output) in running.items():
                failure = await _finished(spy, output, seconds)
                profiles[name] = {"error": failure} if failure else summarise(output.read_text(errors="replace"))
            for name, (spy, output) in drawing.items():
                failure = await _finished(spy, output, seconds)
                profiles[name]["flamegraph"] = f"not drawn: {failure}" if failure else str(output)
            results["profile"] = profiles


async def _record(binary: str, form: str, output: Path, pid: int, seconds: float) -> asyncio.subprocess.Process:
    """Starts py-spy on `pid` and any process it forks, without pausing them (--nonblocking)."""
    command = [binary, "record", "--format", form, "-r", str(SAMPLE_RATE), "-d", str(int(seconds))]
    command += ["--nonblocking", "--subprocesses", "-o", str(output), "--pid", str(pid)]
    return await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )


async def _finished(spy: asyncio.subprocess.Process, output: Path, seconds: float) -> str | None:
    """Waits for a py-spy; None when it wrote its output, else why not."""
    try:
        _, stderr = await asyncio.wait_for(spy.communicate(), seconds + 30)
    except TimeoutError:
        spy.kill()
        _, stderr = await spy.communicate()
    if await asyncio.to_thread(output.exists):
        return None
    return f"py-spy failed: {stderr.decode(errors='replace')[-300:]}"
