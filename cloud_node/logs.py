"""Structured logs: one JSON object per line, so a log shipper can index every field.

``log_event(logger, "request_failed", model="resnet18", code="INVALID_ARGUMENT", ...)``
writes ``{"ts": ..., "level": "WARNING", "event": "request_failed", "model": ...}`` once
:func:`configure` has installed :class:`JsonFormatter` on the ``cloud_node`` logger.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

LOGGER_NAME = "cloud_node"
_FIELDS_ATTR = "edgecut_fields"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, event, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, _FIELDS_ATTR, {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", stream: IO[str] | None = None) -> logging.Logger:
    """Send the cloud node's logs to ``stream`` (stderr) as JSON lines; returns the logger."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, "_edgecut", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._edgecut = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with structured ``fields``."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={_FIELDS_ATTR: fields})
