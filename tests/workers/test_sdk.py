"""The Worker SDK without a broker: registration and payload models."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from workers import ConfigurationError, TaskContext, Worker


class EchoIn(BaseModel):
    text: str


def test_handler_registers_and_extracts_the_payload_model() -> None:
    worker = Worker("echo", concurrency=8)

    @worker.handler("echo_request")
    async def echo(payload: EchoIn, ctx: TaskContext) -> dict[str, Any]:
        return {"echo": payload.text}

    spec = worker.handler_for("echo_request")
    assert spec is not None and spec.func is echo and spec.payload_type is EchoIn
    assert worker.job_types == ["echo_request"]
    assert (worker.concurrency, worker.prefetch) == (8, 8)
    assert spec.parse_payload({"text": "hi"}) == EchoIn(text="hi")
    with pytest.raises(ValidationError):
        spec.parse_payload({"text": 3})
    assert worker.handler_for("other") is None


def test_raw_dict_payload_is_allowed() -> None:
    worker = Worker("raw", prefetch=3)

    @worker.handler("anything")
    async def anything(payload: dict[str, Any], ctx: TaskContext) -> None:
        return None

    spec = worker.handlers["anything"]
    assert spec.parse_payload({"x": [1]}) == {"x": [1]}
    assert worker.prefetch == 3


async def _not_annotated(payload, ctx):  # type: ignore[no-untyped-def]
    return None


def _sync(payload: EchoIn, ctx: TaskContext) -> None:
    return None


async def _one_param(payload: EchoIn) -> None:
    return None


@pytest.mark.parametrize(
    ("func", "message"),
    [
        (_not_annotated, "annotate its first parameter"),
        (_sync, "must be an `async def`"),
        (_one_param, r"exactly \(payload, ctx\)"),
    ],
)
def test_bad_handlers_are_refused_at_registration(func: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Worker("svc").handler("job")(func)


def test_models_local_to_a_function_are_reported_clearly() -> None:
    class Local(BaseModel):
        x: int

    async def handler(payload: Local, ctx: TaskContext) -> None:  # resolved lazily: "Local" is a string here
        return None

    with pytest.raises(ConfigurationError, match="module level"):
        Worker("svc").handler("job")(handler)


def test_duplicate_job_types_and_bad_names_are_refused() -> None:
    worker = Worker("svc")

    @worker.handler("job")
    async def first(payload: EchoIn, ctx: TaskContext) -> None:
        return None

    with pytest.raises(ConfigurationError, match="already has a handler"):
        worker.handler("job")(first)
    with pytest.raises(ConfigurationError, match="job type"):
        worker.handler("bad type!")
    with pytest.raises(ConfigurationError, match="service name"):
        Worker("Bad.Service")
    with pytest.raises(ConfigurationError, match="concurrency"):
        Worker("svc", concurrency=0)


def test_a_handler_may_declare_a_cache_ttl_and_the_worker_lists_them() -> None:
    worker = Worker("embedder")

    @worker.handler("embed_request", cache_ttl=600)
    async def embed(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {}

    @worker.handler("plain_request")
    async def plain(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {}

    assert worker.cache_ttls == {"embed_request": 600}
    for bad in (0, -1, 7 * 24 * 3600 + 1, 1.5, True):
        with pytest.raises(ConfigurationError, match="cache_ttl"):
            worker.handler("other_request", cache_ttl=bad)  # type: ignore[arg-type]
