"""Optional py-spy sampling of Baton's processes under load: where their CPU time goes, as text.

`--profile N` samples the orchestrator and the worker for N seconds while the full-speed single run
goes, and reports the functions most often on CPU (self) and the project functions most often on the
stack (inclusive). Needs py-spy (the `bench` extra) and permission to ptrace (root or CAP_SYS_PTRACE).
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

OWN_PACKAGES = ("orchestrator/", "workers/", "protocol/")
TOP = 12
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


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
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")[1:]]  # the first item is the thread
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            # The entry points are on every stack: leave them out, they say nothing.
            if any(package in frame for package in OWN_PACKAGES) and "__main__.py" not in frame:
                inclusive[frame] += count

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"frame": f, "percent": 100.0 * c / total} for f, c in counter.most_common(TOP)]

    return {"samples": total, "self": top(self_counts), "inclusive_own": top(inclusive)}


def render(profiles: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for name, profile in profiles.items():
        if "error" in profile:
            lines.append(f"profile {name}: {profile['error']}")
            continue
        lines.append(f"profile {name}: {profile['samples']} samples on CPU")
        for title, key in (("self", "self"), ("inclusive (project code)", "inclusive_own")):
            lines.append(f"  top {title}:")
            lines += [f"    {item['percent']:5.1f}%  {item['frame']}" for item in profile[key]]
    return "\n".join(lines)


class Profiler:
    @staticmethod
    @asynccontextmanager
    async def maybe(seconds: float, system: BatonSystem, results: dict[str, Any]) -> AsyncIterator[None]:
        """Samples every Baton process for `seconds` while the body runs; no-op when seconds <= 0."""
        binary = py_spy()
        if seconds <= 0:
            yield
            return
        if binary is None:
            results["profile"] = {"all": {"error": "py-spy not installed (the `bench` extra has it)"}}
            yield
            return
        directory = Path(tempfile.mkdtemp(prefix="baton-bench-profile-"))
        running: dict[str, tuple[asyncio.subprocess.Process, Path]] = {}
        for process in system.processes:
            output = directory / f"{process.name}.txt"
            command = [binary, "record", "--format", "raw", "-r", "100", "-d", str(int(seconds))]
            command += ["--nonblocking", "-o", str(output), "--pid", str(process.popen.pid)]
            spy = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            running[process.name] = (spy, output)
        try:
            yield
        finally:
            profiles: dict[str, dict[str, Any]] = {}
            for name, (spy, output) in running.items():
                try:
                    _, stderr = await asyncio.wait_for(spy.communicate(), seconds + 30)
                except TimeoutError:
                    spy.kill()
                    _, stderr = await spy.communicate()
                if output.exists():
                    profiles[name] = summarise(output.read_text(errors="replace"))
                else:
                    profiles[name] = {"error": f"py-spy failed: {stderr.decode(errors='replace')[-300:]}"}
            results["profile"] = profiles
