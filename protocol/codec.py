"""Message codecs, chosen per message by its AMQP content type.

Decoding is strict: only plain data (maps with string keys, lists, strings, numbers,
booleans, null) is accepted; msgpack extension types, NaN and infinities are refused,
and nothing larger than the cap is read.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final, Protocol, TypeVar

import msgpack
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from protocol.errors import DecodeError, MessageTooLarge, UnsupportedContentType, summarise_validation

MSGPACK: Final[str] = "application/msgpack"
JSON: Final[str] = "application/json"
DEFAULT_MAX_MESSAGE_BYTES: Final[int] = 4 * 1024 * 1024
# Maps and lists inside maps and lists. Far deeper than any real message (the HTTP API takes 64),
# far below where pydantic's serializer (about 250), msgpack (1,024) and json (the interpreter's
# recursion limit) give up: a message that decodes can always be encoded again.
MAX_NESTING: Final[int] = 100

Model = TypeVar("Model", bound=BaseModel)


class Codec(Protocol):
    content_type: str

    def dumpb(self, obj: Any) -> bytes: ...

    def loadb(self, data: bytes) -> Any:
        """Plain data (see the module's docstring), or DecodeError."""
        ...

    def parse(self, data: bytes) -> Any:
        """`loadb` without the plain-data check."""
        ...


def compact_json(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is: pydantic-core's encoder, a third to a fifth of
    `json.dumps`'s time (floats may be spelled differently: 1e-7, not 1e-07). Text it cannot
    encode as UTF-8 (a lone surrogate, which JSON input may carry as an escape) is escaped."""
    try:
        return to_json(value).decode()
    except PydanticSerializationError:
        return json.dumps(value, separators=(",", ":"))


def json_fields(model: BaseModel) -> dict[str, Any]:
    """`model.model_dump(mode="json")` in 0.8x its time: the same serializer call with its defaults,
    without model_dump's fourteen keyword arguments passed on one by one (0.5-0.7 us less per
    message: tests/bench/codecs.py)."""
    return model.__pydantic_serializer__.to_python(model, mode="json")  # type: ignore[no-any-return]


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack extension type {code} is not allowed")


# The only types a decoder's output may hold; both decoders build exactly these (never subclasses),
# so exact type tests say what isinstance would.
_SCALARS: Final[frozenset[type]] = frozenset({str, int, bool, type(None)})
_PLAIN: Final[frozenset[type]] = _SCALARS | {float, dict, list}


def _check_plain(obj: Any) -> None:
    # msgpack decodes its timestamp extension without calling ext_hook; catch it and floats like NaN here.
    # Walked level by level, so the depth costs nothing per item; a level's types are gathered in C
    # (`set(map(type, ...))`) and only a level holding floats or foreign types is looked at item by item:
    # an envelope's decode 0.8x the time of testing each item (tests/bench/codecs.py).
    level = [obj]
    for _ in range(MAX_NESTING + 1):
        kinds = set(map(type, level))
        if kinds <= _SCALARS:
            return
        if float in kinds or not kinds <= _PLAIN:
            _check_items(level)
        deeper: list[Any] = []
        for item in level:
            kind = type(item)
            if kind is dict:
                deeper.extend(item.values())
            elif kind is list:
                deeper.extend(item)
        if not deeper:
            return
        level = deeper
    raise DecodeError(f"maps and lists nested deeper than {MAX_NESTING} levels are not allowed")


def _check_items(level: list[Any]) -> None:
    """The first item of one level that is a non-finite number or not plain data, refused."""
    for item in level:
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                raise DecodeError("non-finite numbers are not allowed")
        elif kind not in _PLAIN:
            raise DecodeError(f"value of type {kind.__name__} is not allowed")


class MsgpackCodec:
    content_type = MSGPACK

    def __init__(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes

    def dumpb(self, obj: Any) -> bytes:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]

    def loadb(self, data: bytes) -> Any:
        obj = self.parse(data)
        _check_plain(obj)
        return obj

    def parse(self, data: bytes) -> Any:
        """`loadb` without the plain-data check (which the equivalence tests swap for the old one)."""
        _check_size(data, self.max_bytes)
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_refuse_ext, use_list=True)
        except DecodeError:
            raise
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise DecodeError(f"not valid msgpack: {exc}") from exc


def _refuse_constant(name: str) -> Any:
    raise DecodeError(f"JSON constant {name} is not allowed")


class JsonCodec:
    content_type = JSON

    def __init__(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes

    def dumpb(self, obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    def loadb(self, data: bytes) -> Any:
        obj = self.parse(data)
        _check_plain(obj)
        return obj

    def parse(self, data: bytes) -> Any:
        """`loadb` without the plain-data check."""
        _check_size(data, self.max_bytes)
        try:
            return json.loads(data, parse_constant=_refuse_constant)
        except DecodeError:
            raise
        except RecursionError:
            raise DecodeError(f"maps and lists nested deeper than {MAX_NESTING} levels are not allowed") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise DecodeError(f"not valid JSON: {exc}") from exc


def _check_size(data: bytes, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise MessageTooLarge(f"message of {len(data)} bytes exceeds the {max_bytes}-byte cap")


class CodecSet:
    """The codecs a process accepts, looked up by AMQP content type."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, default: str = MSGPACK) -> None:
        self.max_bytes = max_bytes
        self._codecs: dict[str, Codec] = {MSGPACK: MsgpackCodec(max_bytes), JSON: JsonCodec(max_bytes)}
        self.default = self.for_content_type(default)

    def for_content_type(self, content_type: str | None) -> Codec:
        if content_type is None:
            return self._codecs[MSGPACK]
        codec = self._codecs.get(content_type.split(";", 1)[0].strip().lower())
        if codec is None:
            raise UnsupportedContentType(f"no codec for content type {content_type!r}")
        return codec

    def encode(self, model: BaseModel, codec: Codec | None = None) -> bytes:
        return (codec or self.default).dumpb(json_fields(model))

    def decode(self, cls: type[Model], body: bytes, content_type: str | None) -> Model:
        """Decode and validate; every failure is a DecodeError that says what was wrong."""
        try:
            codec = self.for_content_type(content_type)
        except UnsupportedContentType as exc:
            raise DecodeError(str(exc)) from exc
        obj = codec.loadb(body)
        if not isinstance(obj, dict):
            raise DecodeError(f"a {cls.__name__} must be a map, got {type(obj).__name__}")
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            raise DecodeError(f"invalid {cls.__name__}: {summarise_validation(exc)}") from exc
