"""Structured logging, with a last line of defence against leaked keys.

Every record passes a filter that replaces anything shaped like a keyops key
with ``[redacted key]`` before any handler sees it, so a careless log call
cannot put plaintext into a log file (invariant 1).
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from keyops.domain.keyformat import SCANNER_REGEX

_KEY_PATTERN = re.compile(SCANNER_REGEX)
_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    return _KEY_PATTERN.sub("[redacted key]", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any
    ``extra={...}`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                doc[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            doc["error"] = redact(f"{record.exc_info[0].__name__}: {record.exc_info[1]}")
        return orjson.dumps(doc, default=str).decode()


def configure(level: str = "INFO", fmt: str = "json", stream: Any = None, *, sql_echo: bool = False) -> None:
    """Send keyops' logs (and, with ``sql_echo``, SQLAlchemy's statements) to
    stderr through the redacting filter. stdout stays clean for ``--json``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("keyops")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    sql = logging.getLogger("sqlalchemy.engine")
    if sql_echo:
        sql.handlers[:] = [handler]
        sql.setLevel(logging.INFO)
        sql.propagate = False
