"""The tests' own URL helper: a proxied URL keeps everything of the original but its host and port."""

from __future__ import annotations

import pytest

from tests.services import relocated_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:guest@127.0.0.1:4000/"),
        ("amqp://guest:guest@rabbit.internal:5672/newcomer", "amqp://guest:guest@127.0.0.1:4000/newcomer"),
        ("amqp://u%40x:p%2Fw@host/baton-ci-1?heartbeat=5", "amqp://u%40x:p%2Fw@127.0.0.1:4000/baton-ci-1?heartbeat=5"),
        ("amqp://guest:guest@[::1]:5672/%2F", "amqp://guest:guest@127.0.0.1:4000/%2F"),
        ("redis://127.0.0.1:6379/5", "redis://127.0.0.1:4000/5"),
        ("redis://:secret@localhost/2", "redis://:secret@127.0.0.1:4000/2"),
    ],
)
def test_only_host_and_port_change(url: str, expected: str) -> None:
    assert relocated_url(url, 4000) == expected


def test_options_are_added_to_the_query() -> None:
    assert relocated_url("amqp://g:g@h:5672/v?heartbeat=5", 4000, reconnect_interval="0.3") == (
        "amqp://g:g@127.0.0.1:4000/v?heartbeat=5&reconnect_interval=0.3"
    )
    assert relocated_url("amqp://g:g@h/v", 4000, "::1", a="1") == "amqp://g:g@[::1]:4000/v?a=1"
