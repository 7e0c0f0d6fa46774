"""RabbitMQ and Redis instances of a fault test's own, on free ports, that it may kill at will.

The shared services are never stopped by these tests. Ports are picked free rather than fixed, so a
developer's own server on a port (a second Redis on 6380 is common) is never taken for ours.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.e2e.harness import free_port
from tests.polling import eventually_blocking


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


class PrivateRabbitMQ:
    """A separate RabbitMQ node (own node name, port and data dir) started with rabbitmq-server."""

    def __init__(self, port: int | None = None, dist_port: int | None = None, name: str = "baton-fault") -> None:
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("rabbitmq-server is not installed: apt-get install rabbitmq-server")
        self.port = port or free_port()
        dist_port = dist_port or free_port()
        self.node = f"{name}-{uuid.uuid4().hex[:8]}@localhost"  # unique: rabbitmqctl -n only ever reaches ours
        self.base = Path(tempfile.mkdtemp(prefix="baton-rmq-"))
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
        }
        if os.geteuid() == 0:  # the server script drops to the rabbitmq user, which must own the data dir
            user = pwd.getpwnam("rabbitmq")
            os.chown(self.base, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self, timeout: float = 90) -> None:
        if _port_open(self.port):
            raise RuntimeError(f"port {self.port} is already taken")
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, check=True, capture_output=True, timeout=60)
        eventually_blocking(
            lambda: _port_open(self.port), within=timeout, what=f"RabbitMQ {self.node} on port {self.port}"
        )

    def kill(self) -> None:
        """SIGKILL the node: no clean shutdown, like a crash."""
        pid_file = self.base / "pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        eventually_blocking(lambda: not _port_open(self.port), within=30, what=f"RabbitMQ {self.node} to die")
        pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], env=self.env, capture_output=True, timeout=60)
        if _port_open(self.port):
            self.kill()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class PrivateRedis:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="baton-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if _port_open(self.port):
            raise RuntimeError(f"port {self.port} is already taken")
        # Append-only persistence so a kill -9 keeps the registry, as a production Redis would.
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.base),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        eventually_blocking(lambda: _port_open(self.port), within=20, what=f"Redis on port {self.port}")
        if self.process.poll() is not None:  # it could not listen: whatever answers there is not ours
            raise RuntimeError(f"redis-server exited with {self.process.returncode} (port {self.port} taken?)")

    def kill(self) -> None:
        """SIGKILL our redis-server; a port it never listened on (taken by another) is left alone."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill()
        self.process.wait()
        eventually_blocking(lambda: not _port_open(self.port), within=10, what="Redis to die")

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)
