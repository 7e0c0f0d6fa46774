"""Errors of the protocol package.

ProtocolError
├── DecodeError          bytes that are not a valid message
│   └── MessageTooLarge  bytes over the codec's size cap
└── UnsupportedContentType

`summarise_validation` is the one text of a pydantic ValidationError: in DecodeErrors, in the
WebSocket's invalid_event errors and in a worker's failed task.
"""

from __future__ import annotations

from typing import Final

from pydantic import ValidationError

VALIDATION_ITEMS_SHOWN: Final[int] = 5


class ProtocolError(Exception):
    """Base of every error raised by `protocol`."""


class DecodeError(ProtocolError):
    """The bytes are not a valid message of the expected kind."""


class MessageTooLarge(DecodeError):
    """The message is larger than the configured cap."""


class UnsupportedContentType(ProtocolError):
    """No codec is registered for this AMQP content type."""


def summarise_validation(exc: ValidationError) -> str:
    """The first few errors as `loc: message`, joined; how many more there are, if any."""
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_url=False)[:VALIDATION_ITEMS_SHOWN]
    ]
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
