"""`python -m orchestrator --processes N`: N orchestrator processes on one port, and the parent that runs them.

Each child is a whole orchestrator (`python -m orchestrator --member-of <parent pid>`) with its own
AMQP and Redis connections, event consumer, update bus, sweeper and WebSockets: the children are
replicas, correct side by side as replicas on several hosts are (they share the durable events
queue, and the update bus brings every applied event to every replica's sockets). They bind the port
with SO_REUSEPORT, so the kernel spreads new connections over them.

The parent serves nothing: it starts the children, forwards SIGTERM and SIGINT to them and waits.
A child that exits without being asked to stops the whole group, which exits non-zero: a half-dead
orchestrator must not keep answering on its port as if it were healthy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

log = logging.getLogger("orchestrator.process_group")

# A child drains its requests (SHUTDOWN_TIMEOUT_SECONDS) and closes its links; one slower than this is killed.
STOP_GRACE_SECONDS: Final[float] = 30.0
# How often a child looks whether its parent is still there (a parent killed with SIGKILL forwards nothing).
PARENT_CHECK_SECONDS: Final[float] = 1.0


class PortTaken(OSError):
    """Something already listens on the group's address."""


def member_command(parent_pid: int) -> list[str]:
    """The command of one child: this interpreter, this package, and its parent's pid."""
    return [sys.executable, "-m", "orchestrator", "--member-of", str(parent_pid)]


async def check_port_free(host: str, port: int) -> None:
    """PortTaken when the address is in use. The children bind it with SO_REUSEPORT, which would
    otherwise let them join the listeners of another group on the same port without a word."""
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(asyncio.Protocol, host=host, port=port)
    except OSError as exc:
        raise PortTaken(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    server.close()
    await server.wait_closed()


@dataclass
class ProcessGroup:
    """Children started by `run`, the signal that stops them, and whether one failed."""

    count: int
    command: Sequence[str]
    env: Mapping[str, str]
    grace_seconds: float = STOP_GRACE_SECONDS
    children: list[asyncio.subprocess.Process] = field(default_factory=list, init=False)
    _stopping_at: float | None = field(default=None, init=False)
    _failed: bool = field(default=False, init=False)
    _killed: bool = field(default=False, init=False)
    _forwarded: set[int] = field(default_factory=set, init=False)  # the signals sent to the children
    _stop_requested: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    async def run(self) -> int:
        """Start the children, wait for all of them; 0 when every one stopped as asked, 1 otherwise."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop, sig)
        try:
            for number in range(1, self.count + 1):
                child = await asyncio.create_subprocess_exec(*self.command, env=dict(self.env))
                self.children.append(child)
                log.info("orchestrator process %d of %d started: pid %d", number, self.count, child.pid)
                if self._stopping_at is not None:  # a signal came while it started: stop it, start no more
                    self.stop(signal.SIGTERM)
                    break
        except OSError:
            log.exception("could not start an orchestrator process; stopping the others")
            self._failed = True
            self.stop(signal.SIGTERM)
        await self._wait_all()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        return 1 if self._failed else 0

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Forward `sig` to every child still running (a second signal is forwarded again)."""
        if self._stopping_at is None:
            self._stopping_at = time.monotonic()
            self._stop_requested.set()  # the wait for the children takes the grace period from now
            log.info("%s: stopping %d orchestrator processes", sig.name, len(self.children))
        self._forwarded.add(sig)
        for child in self.children:
            if child.returncode is None:
                child.send_signal(sig)

    async def _wait_all(self) -> None:
        waits = {asyncio.ensure_future(child.wait()): child for child in self.children}
        stop_requested = asyncio.ensure_future(self._stop_requested.wait())
        pending = set(waits)
        try:
            while pending:
                timeout = None
                if self._stopping_at is not None and not self._killed:
                    timeout = max(0.0, self._stopping_at + self.grace_seconds - time.monotonic())
                waiting = pending if stop_requested.done() else {*pending, stop_requested}
                done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for finished in done & pending:
                    self._ended(waits[finished])
                pending -= done
                if not done:
                    self._kill([waits[task] for task in pending])
        finally:
            stop_requested.cancel()

    def _ended(self, child: asyncio.subprocess.Process) -> None:
        code = child.returncode
        if self._stopping_at is None:
            log.error("orchestrator process pid %d exited on its own (status %s); stopping the others", child.pid, code)
            self._failed = True
            self.stop(signal.SIGTERM)
        # Ended by the forwarded signal itself: a child still starting, before its handlers were set, had
        # nothing in flight. Any other status is a failure.
        elif code != 0 and -(code or 0) not in self._forwarded:
            log.error("orchestrator process pid %d stopped with status %s", child.pid, code)
            self._failed = True
        else:
            log.info("orchestrator process pid %d stopped", child.pid)

    def _kill(self, late: list[asyncio.subprocess.Process]) -> None:
        self._failed = self._killed = True
        for child in late:
            if child.returncode is None:
                log.error(
                    "orchestrator process pid %d still runs %.0f s after the stop: killed",
                    child.pid,
                    self.grace_seconds,
                )
                child.kill()


async def run_group(count: int, host: str, port: int, env: Mapping[str, str]) -> int:
    """The parent of `count` orchestrator processes on host:port; its exit status."""
    try:
        await check_port_free(host, port)
    except PortTaken as exc:
        log.error("%s", exc)
        return 1
    return await ProcessGroup(count, member_command(os.getpid()), env).run()


async def watch_parent(parent_pid: int, stop: asyncio.Event, every: float = PARENT_CHECK_SECONDS) -> None:
    """Set `stop` once this process's parent is no longer `parent_pid` (it died, and init adopted us)."""
    # Polled: nothing tells a child its parent died (PR_SET_PDEATHSIG would, on Linux only, and by a signal).
    while os.getppid() == parent_pid:  # noqa: ASYNC110
        await asyncio.sleep(every)
    log.error("the orchestrator parent process %d is gone; stopping", parent_pid)
    stop.set()
