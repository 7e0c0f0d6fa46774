"""Data references in a step's payload: `"$input.<path>"` and `"$steps.<step>.result.<path>"`.

Only a string that is exactly a reference is replaced, at any depth of the payload (inside objects and
lists); a string that merely contains one is left as it is. The path is dot-separated: object keys, or
list indexes written as digits (`$steps.split.result.chunks.0`). An empty path takes the whole value
(`"$input"`, `"$steps.split.result"`). Strings beginning with `$input.` or `$steps` that do not follow
this grammar are malformed references, refused when the definition is validated; any other string
beginning with `$` (`"$5"`, `"$inputs"`) is plain text.

Resolving: a path that is not there makes the step fail with a clear error, rather than run with null
(a silent null travels far before anyone notices). A reference to a step that ended `skipped` (its
branch was not taken) resolves to null, so a step joining two branches can name both arms.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

INPUT: Final[str] = "$input"
STEPS: Final[str] = "$steps"
RESULT: Final[str] = "result"


class MalformedReference(ValueError):
    """A string that starts like a reference but does not follow its grammar."""


class MissingReference(LookupError):
    """A reference whose path is not in the value it names; the message says which part is missing."""


@dataclass(frozen=True)
class Reference:
    text: str
    source: Literal["input", "steps"]
    step: str | None
    path: tuple[str, ...]


def parse_reference(text: str) -> Reference | None:
    """The reference `text` is, or None when it is plain text; MalformedReference when it is neither."""
    if text == INPUT:
        return Reference(text, "input", None, ())
    if text.startswith(INPUT + "."):
        return Reference(text, "input", None, _segments(text, text.split(".")[1:]))
    if text == STEPS or text.startswith(STEPS + "."):
        parts = text.split(".")
        if len(parts) < 3 or not parts[1] or parts[2] != RESULT:
            raise MalformedReference(f"{text!r} is not of the form $steps.<step>.result[.<path>]")
        return Reference(text, "steps", parts[1], _segments(text, parts[3:]))
    return None


def _segments(text: str, segments: list[str]) -> tuple[str, ...]:
    if any(not segment for segment in segments):
        raise MalformedReference(f"{text!r} has an empty path segment")
    return tuple(segments)


def iter_strings(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string in a JSON value with where it is, depth first."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from iter_strings(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from iter_strings(item, (*loc, index))


def resolve(value: Any, input: Mapping[str, Any], results: Mapping[str, Any], skipped: Collection[str]) -> Any:
    """`value` with every reference replaced: `results` holds the completed steps' results, `skipped`
    names the steps that ended skipped. Raises MissingReference (MalformedReference when the
    definition was never validated)."""
    if isinstance(value, str):
        reference = parse_reference(value)
        return value if reference is None else _lookup(reference, input, results, skipped)
    if isinstance(value, Mapping):
        return {key: resolve(item, input, results, skipped) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(item, input, results, skipped) for item in value]
    return value


def _lookup(
    reference: Reference, input: Mapping[str, Any], results: Mapping[str, Any], skipped: Collection[str]
) -> Any:
    current: Any = input
    where = "the execution's input"
    if reference.step is not None:
        if reference.step in skipped:
            return None
        if reference.step not in results:
            raise MissingReference(f"{reference.text}: step {reference.step!r} has no result")
        current = results[reference.step]
        where = f"the result of step {reference.step!r}"
    for depth, segment in enumerate(reference.path):
        current = _child(current, segment)
        if current is _MISSING:
            at = ".".join(reference.path[: depth + 1])
            raise MissingReference(f"{reference.text}: {at!r} is not in {where}")
    return current


_MISSING: Final[object] = object()


def _child(value: Any, segment: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(segment, _MISSING)
    if isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
        return value[int(segment)]
    return _MISSING
