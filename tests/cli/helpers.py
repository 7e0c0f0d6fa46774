"""Running the `baton` command against a test orchestrator, and the worker of the test service that the
CLI's jobs run on.

A finished command (`await baton(...)`) runs in this process by default: clients.cli.app.run, the function the
console script calls, on a thread with its own stdin, stdout, stderr and environment; a subprocess paid 0.6-2.7 s
a call, mostly importing aiohttp. `Baton(..., in_process=False)` and `start` (a command the test reads while it
runs, or signals) run the real `python -m clients.cli` subprocess, as do the tests of the exit codes and of the
console script."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import threading
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from clients.cli.app import run as run_cli
from workers import RetryPolicy, TaskContext, Worker

ROOT = Path(__file__).resolve().parents[2]
# rich reads these: a test that wants the terminal view sets them itself.
_TERMINAL_FORCING = frozenset({"TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "COLUMNS"})
MODULE: tuple[str, ...] = (sys.executable, "-m", "clients.cli")
# An in-process command swaps the process's stdio and environment: one at a time (asyncio.gather queues them).
_STDIO = threading.Lock()


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


class Baton:
    """`baton ...` with BATON_URL and BATON_API_KEY set for a test tenant (flags override them)."""

    def __init__(self, url: str, key: str, command: tuple[str, ...] = MODULE, in_process: bool = True) -> None:
        self.url = url
        self.key = key
        self.command = command
        self.in_process = in_process and command == MODULE

    def environment(self, **extra: str) -> dict[str, str]:
        inherited = {name: value for name, value in os.environ.items() if name not in _TERMINAL_FORCING}
        env = {
            **inherited,
            "PYTHONPATH": str(ROOT),
            "BATON_URL": self.url,
            "BATON_API_KEY": self.key,
            "NO_COLOR": "1",
            "COLUMNS": "250",
            **extra,
        }
        return env

    async def start(self, *args: str, **env: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.command,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.environment(**env),
            cwd=ROOT,
        )

    async def __call__(self, *args: str, stdin: str = "", within: float = 60.0, **env: str) -> Ran:
        if self.in_process:
            try:
                return await asyncio.wait_for(asyncio.to_thread(self._here, list(args), stdin, env), within)
            except TimeoutError:
                raise AssertionError(f"baton {' '.join(args)} still ran after {within} s") from None
        process = await self.start(*args, **env)
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin.encode()), within)
        except TimeoutError:
            raise AssertionError(f"baton {' '.join(args)} still ran after {within} s") from None
        finally:
            await stopped(process)
        assert process.returncode is not None
        return Ran(process.returncode, out.decode(), err.decode())

    def _here(self, args: list[str], stdin: str, env: dict[str, str]) -> Ran:
        """`baton <args>` as the console script runs it (clients.cli.app.run), in this process."""
        out, err = io.StringIO(), io.StringIO()
        environment = self.environment(**env)
        with _STDIO, pytest.MonkeyPatch.context() as patch, redirect_stdout(out), redirect_stderr(err):
            # Only the variables that differ change: the test's own loop goes on meanwhile on the main thread.
            for name in set(os.environ) - set(environment):
                patch.delenv(name)
            for name, value in environment.items():
                if os.environ.get(name) != value:
                    patch.setenv(name, value)
            patch.setattr(sys, "stdin", io.StringIO(stdin))
            try:
                code = run_cli(args)
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
            except BaseException:  # what the interpreter would do: a traceback and exit code 1
                traceback.print_exc()
                code = 1
        return Ran(code, out.getvalue(), err.getvalue())


async def stopped(process: asyncio.subprocess.Process) -> None:
    """Killed if still running (a test that failed or a poll that gave up), and reaped."""
    if process.returncode is None:
        process.kill()
        await process.communicate()


class Work(BaseModel):
    """What the test service's job does: report each of `progress` (pausing after each), wait for the test's
    gate if `gated`, report each of `then`, fail if asked, else echo `text`."""

    progress: list[tuple[float, str]] = []
    pause: float = 0.05
    gated: bool = False
    then: list[tuple[float, str]] = []
    hold: float = 0.0
    fail: str | None = None
    text: str | None = None


def cli_worker(service: str, job_type: str, gate: asyncio.Event | None = None) -> Worker:
    # No retry: a failure is final at once and parks the task in the service's dead letters (a
    # PermanentError would not: it fails the job without parking).
    worker = Worker(service, concurrency=4, retry=RetryPolicy(max_retries=0))

    @worker.handler(job_type)
    async def work(payload: Work, ctx: TaskContext) -> dict[str, Any]:
        for percentage, message in payload.progress:
            await ctx.progress(percentage, message)
            await asyncio.sleep(payload.pause)
        if payload.gated:
            assert gate is not None, "a gated job needs the worker's gate"
            await gate.wait()
        for percentage, message in payload.then:
            await ctx.progress(percentage, message)
            await asyncio.sleep(payload.pause)
        await asyncio.sleep(payload.hold)
        if payload.fail is not None:
            raise RuntimeError(payload.fail)
        return {"echo": payload.text, "step": ctx.workflow.step if ctx.workflow else None}

    return worker


async def read_until(stream: asyncio.StreamReader | None, text: str, within: float = 30.0) -> list[str]:
    """Lines of a running command's output up to the first that holds `text`."""
    assert stream is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(within):
            while not lines or text not in lines[-1]:
                line = await stream.readline()
                if not line:
                    raise AssertionError(f"the output ended without {text!r}: {lines}")
                lines.append(line.decode().rstrip("\n"))
    except TimeoutError:
        raise AssertionError(f"no {text!r} within {within} s: {lines}") from None
    return lines
