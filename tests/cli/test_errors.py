"""Every failure is one line on stderr, `baton: error: ...`, with the server's error code and detail where
there is one, and its exit code: 2 usage and bad input, 3 auth, 4 not found, 5 unreachable. No traceback."""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis.asyncio as aioredis

from tests.api_server import Api, serve_api_without_broker
from tests.cli.helpers import Baton


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nobody listens there once the socket is closed


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("baton: error: "), err
    assert "Traceback" not in err
    return lines[0].removeprefix("baton: error: ")


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ('{"text": ', "--payload is not valid JSON: "),
        ("[1, 2]", "--payload must be a JSON object ({...}), got list"),
        ("@/no/such/file.json", "--payload: cannot read /no/such/file.json: No such file or directory"),
    ],
)
async def test_a_bad_payload_is_refused_before_anything_is_sent(
    api: Api, baton: Baton, payload: str, says: str
) -> None:
    ran = await baton("submit", api.job_type, "--payload", payload)

    assert ran.code == 2
    assert one_error_line(ran.err).startswith(says), ran.err
    listed = await api.client.get("/jobs", headers=api.headers_a)
    assert (await listed.json())["total"] == 0


async def test_usage_errors_exit_2(api: Api, baton: Baton) -> None:
    baton = Baton(baton.url, baton.key, in_process=False)  # the exit code of the real command
    unknown_option, no_type, bad_priority, both_replays, bad_url = await asyncio.gather(
        baton("submit", api.job_type, "--colour", "red"),
        baton("submit"),
        baton("submit", api.job_type, "--priority", "urgent"),
        baton("dead-letters", api.service, "--replay", "--replay-all"),
        baton("jobs", "--url", "localhost:8000"),
    )

    assert one_error_line(unknown_option.err).startswith("usage error: No such option: --colour"), unknown_option
    assert unknown_option.err.rstrip().endswith("(see: baton submit --help)")
    assert one_error_line(no_type.err) == "usage error: Missing argument 'TYPE'. (see: baton submit --help)"
    assert one_error_line(bad_priority.err) == "--priority must be high, medium, low or an integer 0-9, got 'urgent'"
    assert "--replay-all" in one_error_line(both_replays.err)
    assert one_error_line(bad_url.err) == "--url must look like http://host:port, got 'localhost:8000'"
    assert {r.code for r in (unknown_option, no_type, bad_priority, both_replays, bad_url)} == {2}


async def test_the_servers_refusal_of_bad_input_exits_2(api: Api, baton: Baton) -> None:
    ran = await baton("submit", "no_such_type_anywhere")

    assert ran.code == 2
    assert one_error_line(ran.err).startswith("422 unknown_job_type: "), ran.err


async def test_a_wrong_key_exits_3(api: Api, baton: Baton) -> None:
    by_flag, by_environment, without = await asyncio.gather(
        baton("jobs", "--key", "not-a-key"),
        baton("status", "some-job", BATON_API_KEY="not-a-key"),
        baton("jobs", BATON_API_KEY=""),
    )

    assert (by_flag.code, by_environment.code, without.code) == (3, 3, 3)
    assert one_error_line(by_flag.err).startswith("401 "), by_flag.err
    assert one_error_line(by_environment.err).startswith("401 "), by_environment.err
    assert one_error_line(without.err).startswith("401 "), without.err


async def test_an_unknown_job_exits_4(api: Api, baton: Baton) -> None:
    status, cancel = await asyncio.gather(
        baton("status", "f00dfeed-0000-4000-8000-000000000000"),
        baton("cancel", "f00dfeed-0000-4000-8000-000000000000"),
    )

    assert (status.code, cancel.code) == (4, 4)
    assert one_error_line(status.err) == "404 job_not_found: job f00dfeed-0000-4000-8000-000000000000 not found"
    assert one_error_line(cancel.err).startswith("404 "), cancel.err


async def test_an_unreachable_orchestrator_exits_5() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    baton = Baton(url, "any-key", in_process=False)  # the exit code of the real command

    commands = (("jobs",), ("submit", "x", "--follow"), ("health",), ("status", "x"), ("workflows", "run", "w"))
    for args, ran in zip(commands, await asyncio.gather(*(baton(*args) for args in commands)), strict=True):
        assert ran.code == 5, (args, ran)
        assert one_error_line(ran.err).startswith(f"cannot reach the orchestrator at {url}: "), ran.err


async def test_an_orchestrator_without_its_broker_exits_5(
    redis_url: str, redis_client: aioredis.Redis, unique: str
) -> None:
    async with serve_api_without_broker(redis_url, redis_client, unique) as api:
        baton = Baton(str(api.client.make_url("")).rstrip("/"), api.headers_a["Authorization"].removeprefix("Bearer "))
        health, submit = await asyncio.gather(baton("health"), baton("submit", api.job_type))

    assert health.code == 5 and "status unavailable" in health.out and "broker down" in health.out, health
    assert submit.code == 5, submit
    assert one_error_line(submit.err).startswith("503 "), submit.err
