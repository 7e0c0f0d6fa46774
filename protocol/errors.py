"""Errors of the protocol package.

ProtocolError
├── DecodeError          bytes that are not a valid message
│   └── MessageTooLarge  bytes over the codec's size cap
└── UnsupportedContentType
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error raised by `protocol`."""


class DecodeError(ProtocolError):
    """The bytes are not a valid message of the expected kind."""


class MessageTooLarge(DecodeError):
    """The message is larger than the configured cap."""


class UnsupportedContentType(ProtocolError):
    """No codec is registered for this AMQP content type."""
