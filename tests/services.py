"""Where the tests find RabbitMQ and Redis: the environment, else localhost, else testcontainers."""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack
from urllib.parse import urlencode, urlsplit, urlunsplit

LOCAL_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"


UNIT_TESTS_ONLY = 'To run only the tests that need no service: `pytest -m "not integration"`.'


class ServiceUnavailable(RuntimeError):
    pass


def reachable(url: str, default_port: int, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout):
            return True
    except OSError:
        return False


def relocated_url(url: str, port: int, host: str = "127.0.0.1", **options: str) -> str:
    """`url` with only its host and port replaced, e.g. to go through a proxy: the credentials, the vhost
    (or Redis db) and the options are kept (a proxied URL that drops the vhost lands in `/` instead).
    `options` are added to the query string."""
    parts = urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}@" if userinfo else ""
    netloc += f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    query = "&".join(q for q in (parts.query, urlencode(options)) if q)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _docker_engine_running() -> bool:
    return os.path.exists("/var/run/docker.sock") or bool(os.environ.get("DOCKER_HOST"))


def resolve_rabbitmq_url(stack: ExitStack) -> str:
    url = os.environ.get("RABBITMQ_URL") or LOCAL_RABBITMQ_URL
    if reachable(url, 5672):
        return url
    if _docker_engine_running():
        from testcontainers.rabbitmq import RabbitMqContainer

        container = stack.enter_context(RabbitMqContainer("rabbitmq:3.13-management"))
        host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
        return f"amqp://guest:guest@{host}:{port}/"
    raise ServiceUnavailable(
        f"RabbitMQ is not reachable at {url} and no Docker engine runs for testcontainers. "
        "Start it (`rabbitmq-server -detached`; `bash scripts/test.sh` starts it when down) or set RABBITMQ_URL. "
        + UNIT_TESTS_ONLY
    )


def resolve_redis_url(stack: ExitStack) -> str:
    url = os.environ.get("REDIS_URL") or LOCAL_REDIS_URL
    if reachable(url, 6379):
        return url
    if _docker_engine_running():
        from testcontainers.redis import RedisContainer

        container = stack.enter_context(RedisContainer("redis:7"))
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        return f"redis://{host}:{port}/0"
    raise ServiceUnavailable(
        f"Redis is not reachable at {url} and no Docker engine runs for testcontainers. "
        "Start it (`redis-server --daemonize yes`; `bash scripts/test.sh` starts it when down) or set REDIS_URL. "
        + UNIT_TESTS_ONLY
    )
