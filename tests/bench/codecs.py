"""What the wire models cost per message: pydantic as Baton uses it, other pydantic calls, and msgspec.

    PYTHONPATH=. tests/bench/.venv/bin/python -m tests.bench.codecs [--calls 5000] [--rounds 7]

msgspec is in the `bench` extra only (run.sh's venv has it). For each operation on the hot path
(envelope encode, envelope decode + validate, event encode, event decode + validate, event
model_dump to a JSON dict) every way of doing it is timed in the same run, rounds interleaved, and
the least microseconds per call over the rounds is printed with its ratio to today's path (the
first row of each operation). Rows marked "not equivalent" do less than today's path (no
plain-data check, msgspec's lax/strict rules instead of pydantic's, or no pydantic model at all):
they bound what a change could win, they are not candidates as they stand.

Shapes are a noop job's as the benchmark runs it (POST /jobs {"type", "payload": {"n": i}}): the
envelope `JobService` builds and its `running` and `completed` events, plus a larger envelope
and event like the protocol tests' (session, deadline, nested payload, a failure's traceback).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgpack
import msgspec
from msgspec import Meta

from protocol.codec import JSON, MSGPACK, CodecSet, _check_plain, json_fields
from protocol.envelope import ContextIds, TaskEnvelope, TaskMetadata, utc_now
from protocol.events import JobStatus, TaskEvent, completed_event, failed_event, status_event
from protocol.names import JOB_TYPE_PATTERN, SERVICE_NAME_PATTERN, TENANT_ID_PATTERN
from tests.protocol.codec_before import CodecSetBefore, large_envelope

NOT_EQUIVALENT = " (not equivalent)"


class ContextStruct(msgspec.Struct, forbid_unknown_fields=True):
    agent_id: str | None = None
    conversation_id: str | None = None
    collection_id: str | None = None
    user_id: str | None = None
    request_id: str | None = None


class MetadataStruct(msgspec.Struct):
    source: Literal["api", "scheduled", "system", "workflow"] = "api"
    user_id: str | None = None
    timeout_ms: Annotated[int, Meta(gt=0)] | None = None
    parent_task_id: str | None = None


Id = Annotated[str, Meta(min_length=1, max_length=128)]
Tenant = Annotated[str, Meta(pattern=TENANT_ID_PATTERN)]
Service = Annotated[str, Meta(pattern=SERVICE_NAME_PATTERN)]


class EnvelopeStruct(msgspec.Struct, forbid_unknown_fields=True):
    """TaskEnvelope's fields and limits as msgspec reads them (its `$` is Python's: "acme\\n" passes)."""

    global_task_id: Id
    tenant_id: Tenant
    type: Annotated[str, Meta(pattern=JOB_TYPE_PATTERN)]
    service: Service
    created_at: datetime
    task_id: Id = ""
    session_id: Annotated[str, Meta(max_length=256)] | None = None
    priority: Annotated[int, Meta(ge=0, le=9)] = 5
    status: Literal["pending"] = "pending"
    attempt: Annotated[int, Meta(ge=1)] = 1
    deadline: datetime | None = None
    context: ContextStruct = msgspec.field(default_factory=ContextStruct)
    metadata: MetadataStruct = msgspec.field(default_factory=MetadataStruct)
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    v: Literal[1] = 1


class EventStruct(msgspec.Struct, forbid_unknown_fields=True):
    event: str
    service: Service
    task_id: Id
    global_task_id: Id
    tenant_id: Tenant
    timestamp: datetime
    seq: Annotated[int, Meta(ge=0)]
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    v: Literal[1] = 1


def noop_envelope(n: int) -> TaskEnvelope:
    """As JobService.build_envelope makes it for POST /jobs {"type": "noop", "payload": {"n": n}}."""
    context = ContextIds(request_id="5f0c1f9a-0a1e-4e67-8d0c-6c7e8f3b9b11")
    return TaskEnvelope(
        global_task_id="0b6f7f0e-3b7a-4a63-9d1f-2c1c7b0f9a11",
        tenant_id="bench-tenant",
        type="noop",
        service="bench-noop",
        created_at=utc_now(),
        context=context,
        metadata=TaskMetadata.model_validate({"source": "api", "user_id": None, "timeout_ms": None}),
        payload={"n": n},
    )


def envelope_from_struct(s: EnvelopeStruct) -> TaskEnvelope:
    """The model without validating it again (model_construct, nested models too)."""
    fields = msgspec.structs.asdict(s)
    fields["context"] = ContextIds.model_construct(**msgspec.structs.asdict(s.context))
    fields["metadata"] = TaskMetadata.model_construct(**msgspec.structs.asdict(s.metadata))
    return TaskEnvelope.model_construct(**fields)


def event_from_struct(s: EventStruct) -> TaskEvent:
    return TaskEvent.model_construct(**msgspec.structs.asdict(s))


Variants = list[tuple[str, Callable[[], object]]]


def encode_variants(codecs: CodecSet, model: Any, mirror: msgspec.Struct) -> Variants:
    encoder = msgspec.msgpack.Encoder()
    return [
        (
            "today: model_dump(json) + msgpack.packb",
            lambda: msgpack.packb(model.model_dump(mode="json"), use_bin_type=True),
        ),
        ("now: json_fields (serializer.to_python) + packb", lambda: codecs.encode(model)),
        ("model_dump(json) + msgspec.msgpack.encode", lambda: encoder.encode(model.model_dump(mode="json"))),
        ("json_fields + msgspec.msgpack.encode", lambda: encoder.encode(json_fields(model))),
        ("msgspec Struct mirror encode" + NOT_EQUIVALENT, lambda: encoder.encode(mirror)),
    ]


def decode_variants(
    codecs: CodecSet, cls: type[Any], struct: type[msgspec.Struct], body: bytes, json_body: bytes
) -> Variants:
    before = CodecSetBefore(codecs.max_bytes)
    any_decoder = msgspec.msgpack.Decoder()
    struct_decoder = msgspec.msgpack.Decoder(struct)
    from_struct = envelope_from_struct if cls is TaskEnvelope else event_from_struct
    return [
        (
            "today: msgpack.unpackb + isinstance walk + model_validate",
            lambda: before.decode(cls, body, MSGPACK),
        ),
        ("now: unpackb + per-level type-set walk + model_validate", lambda: codecs.decode(cls, body, MSGPACK)),
        (
            "msgspec decode (Any) + walk + model_validate [1]",
            lambda: _walk_then_validate(cls, any_decoder.decode(body)),
        ),
        ("msgspec Struct decode + model_construct" + NOT_EQUIVALENT, lambda: from_struct(struct_decoder.decode(body))),
        ("msgspec Struct decode alone" + NOT_EQUIVALENT, lambda: struct_decoder.decode(body)),
        ("JSON today: json.loads + walk + model_validate", lambda: before.decode(cls, json_body, JSON)),
        ("JSON: model_validate_json (no walk)" + NOT_EQUIVALENT, lambda: cls.model_validate_json(json_body)),
    ]


def _walk_then_validate(cls: type[Any], obj: Any) -> Any:
    """What `now` does after parsing: msgspec's Any holds what the walk refuses (Ext, datetime, bytes) too."""
    _check_plain(obj)
    return cls.model_validate(obj)


def dump_variants(event: TaskEvent, mirror: EventStruct) -> Variants:
    return [
        ("today: model_dump(mode='json')", lambda: event.model_dump(mode="json")),
        ("now: json_fields (serializer.to_python(mode='json'))", lambda: json_fields(event)),
        ("msgspec.to_builtins(Struct mirror)" + NOT_EQUIVALENT, lambda: msgspec.to_builtins(mirror)),
    ]


def envelope_mirror(envelope: TaskEnvelope) -> EnvelopeStruct:
    return msgspec.convert(envelope.model_dump(mode="json"), EnvelopeStruct)


def event_mirror(event: TaskEvent) -> EventStruct:
    return msgspec.convert(event.model_dump(mode="json"), EventStruct)


def operations(codecs: CodecSet) -> dict[str, Variants]:
    noop = noop_envelope(17)
    large = large_envelope()
    running = status_event(noop, JobStatus.RUNNING, 1_000_001)
    completed = completed_event(noop, {"n": 17}, 1_000_002)
    failed = failed_event(large, error="boom", error_type="ValueError", seq=1_000_003, traceback="  File x\n" * 60)
    ops: dict[str, Variants] = {}
    for name, envelope in (("noop", noop), ("large", large)):
        body, json_body = codecs.encode(envelope), codecs.encode(envelope, codecs.for_content_type(JSON))
        ops[f"envelope encode ({name}, {len(body)} B)"] = encode_variants(codecs, envelope, envelope_mirror(envelope))
        ops[f"envelope decode+validate ({name})"] = decode_variants(
            codecs, TaskEnvelope, EnvelopeStruct, body, json_body
        )
    for name, event in (("running", running), ("completed", completed), ("failed", failed)):
        body, json_body = codecs.encode(event), codecs.encode(event, codecs.for_content_type(JSON))
        ops[f"event encode ({name}, {len(body)} B)"] = encode_variants(codecs, event, event_mirror(event))
        ops[f"event decode+validate ({name})"] = decode_variants(codecs, TaskEvent, EventStruct, body, json_body)
        ops[f"event model_dump json ({name})"] = dump_variants(event, event_mirror(event))
    return ops


def measure(variants: Variants, calls: int, rounds: int) -> list[float]:
    """Least microseconds of this process's CPU per call over the rounds; the variants take turns within
    each round (CPU time, not wall time: on a shared machine the wall clock also counts other processes)."""
    best = [float("inf")] * len(variants)
    for _ in range(rounds):
        for index, (_, call) in enumerate(variants):
            start = time.process_time()
            for _ in range(calls):
                call()
            best[index] = min(best[index], (time.process_time() - start) / calls * 1e6)
    return best


# What one noop job (POST /jobs, `running` then `completed`) does with the wire models, by process: the
# orchestrator encodes its envelope, decodes both events and dumps each for the registry (Registry.apply);
# the worker decodes the envelope and encodes both events. Keys are the operations' names up to the shape.
PER_JOB: Final[dict[str, dict[str, int]]] = {
    "orchestrator": {
        "envelope encode (noop": 1,
        "event decode+validate (running": 1,
        "event decode+validate (completed": 1,
        "event model_dump json (running": 1,
        "event model_dump json (completed": 1,
    },
    "worker": {"envelope decode+validate (noop": 1, "event encode (running": 1, "event encode (completed": 1},
}


def per_job(results: dict[str, list[tuple[str, float]]]) -> None:
    """Microseconds per job by process: today's path, `now`, and msgspec's cheapest row not marked not equivalent."""
    print("\n[1] a lower bound: msgspec's Any also takes int map keys, which msgpack's strict_map_key refuses")
    print(f"\nper noop job{'today':>22} {'now':>9} {'msgspec':>9}  (us of CPU)")
    print("  msgspec: its cheapest row not marked 'not equivalent'")
    for process, counts in PER_JOB.items():
        today = now = msgspec_best = 0.0
        for prefix, count in counts.items():
            rows = next(rows for name, rows in results.items() if name.startswith(prefix))
            equivalent = [cost for label, cost in rows if "msgspec" in label and NOT_EQUIVALENT not in label]
            today += count * rows[0][1]
            now += count * rows[1][1]
            msgspec_best += count * min(equivalent, default=rows[1][1])
        print(f"  {process:<24} {today:9.1f} {now:9.1f} {msgspec_best:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000, help="calls per variant per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    codecs = CodecSet()
    results: dict[str, list[tuple[str, float]]] = {}
    print(f"{'operation / way':<68} {'us/call':>8} {'vs today':>9}")
    for operation, variants in operations(codecs).items():
        print(operation)
        costs = measure(variants, args.calls, args.rounds)
        results[operation] = [(label, cost) for (label, _), cost in zip(variants, costs, strict=True)]
        for label, cost in results[operation]:
            print(f"  {label:<66} {cost:8.2f} {cost / costs[0]:8.2f}x")
    per_job(results)


if __name__ == "__main__":
    main()
