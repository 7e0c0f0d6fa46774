"""A handler's exception as the text of a traceback, bounded, for its task_failed event (`traceback`).

The frames start at the handler: the runtime's own frames above it (the attempt, the execution that
awaits it) say nothing about where the handler failed. Bounded twice, as an event is a message with a
size cap: the last MAX_FRAMES frames of each exception in the chain, then the last MAX_BYTES bytes of
the text, where the exception and its innermost frames are.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from types import TracebackType
from typing import Final

MAX_FRAMES: Final[int] = 30
MAX_BYTES: Final[int] = 8 * 1024
CUT_MARK: Final[str] = "…(earlier lines cut)\n"
_RUNTIME_DIR: Final[str] = str(Path(__file__).resolve().parent) + os.sep


def handler_traceback(exc: BaseException) -> str | None:
    """The formatted traceback of an exception a handler raised; None for one never raised (no traceback)."""
    if exc.__traceback__ is None:
        return None
    lines = traceback.format_exception(type(exc), exc, _from_handler(exc.__traceback__), limit=-MAX_FRAMES)
    return _tail("".join(lines), MAX_BYTES)


def _from_handler(tb: TracebackType) -> TracebackType:
    """The traceback without the runtime's leading frames (all of it when every frame is the runtime's)."""
    current: TracebackType | None = tb
    while current is not None and current.tb_frame.f_code.co_filename.startswith(_RUNTIME_DIR):
        current = current.tb_next
    return current or tb


def _tail(text: str, max_bytes: int) -> str:
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return text
    room = max_bytes - len(CUT_MARK.encode())
    kept = raw[-room:].decode("utf-8", "ignore")  # a character cut in two at the start is dropped
    return CUT_MARK + kept
