"""Logging for both services: one handler on the root logger, as JSON lines or as text for a person.

Configured by the entrypoints only (`python -m orchestrator`, `python -m workers`), never at import.
A JSON record is one object per line: time (UTC, ISO 8601), level, logger, message, the context ids
of `plumbing.log_context` that are known, and the traceback as `exception` when there is one.
Text keeps the classic line and appends the ids in brackets, so `scripts/up.sh`'s log files stay
readable. Plain stdlib logging: every module's `logging.getLogger(__name__)` and %-style calls stay
as they are, and no dependency is added (a JSON record costs a few microseconds more than a text one;
see the README).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Final, Literal, TextIO

from plumbing.log_context import CONTEXT_IDS, current_ids

LogFormat = Literal["json", "text"]
LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("json", "text")
TEXT_FORMAT: Final[str] = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log every reconnect attempt with a traceback: one line from our side is enough.
QUIET_LIBRARIES: Final[tuple[str, ...]] = ("aio_pika", "aiormq")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = current_ids()
        for name in CONTEXT_IDS:
            value = ids.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: a record must never be lost to an id of an odd type.
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with the known context ids appended: `... [job_id=... task_id=...]`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        ids = current_ids()
        # The service and worker id are the same on every line of a process: left out here.
        shown = [f"{name}={ids[name]}" for name in CONTEXT_IDS[2:] if name in ids]
        return f"{line} [{' '.join(shown)}]" if shown else line


class _BatonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` installs, told apart from others so a second call replaces it."""


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")


def configure_logging(level: str, log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """Install the one handler on the root logger (replacing one installed before) at `level`, a checked
    level name; the handler, so a caller (a test) can remove it again."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _BatonHandler)]:
        root.removeHandler(handler)
    handler = _BatonHandler(stream)
    handler.setFormatter(formatter_for(log_format))
    root.addHandler(handler)
    root.setLevel(level)  # also when something had configured logging before
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return handler
