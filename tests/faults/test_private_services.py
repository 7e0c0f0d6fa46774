"""The fault tests' own Redis never lands on a server that is not theirs."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator

import pytest
import redis

from tests.faults.private_services import PrivateRedis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


@pytest.fixture
def someone_elses_port() -> Iterator[int]:
    """A port a program of somebody else's listens on (a developer's second Redis, say)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_taken_port_is_refused_not_used(someone_elses_port: int) -> None:
    private = PrivateRedis(someone_elses_port)
    try:
        with pytest.raises(RuntimeError, match=f"port {someone_elses_port} is already taken"):
            private.start()
    finally:
        private.cleanup()  # and leaves the other program's port alone


def test_by_default_it_runs_on_a_free_port_of_its_own() -> None:
    private = PrivateRedis()
    private.start()
    try:
        client = redis.Redis.from_url(private.url)
        assert client.ping()
        client.close()
    finally:
        private.cleanup()
    assert private.process is not None and private.process.poll() is not None
