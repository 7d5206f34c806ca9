"""Structured logging, with a last line of defence against leaked secrets.

Every record passes a filter that redacts (``keyops.domain.redact``) its
message, its ``extra`` values (recursively: dicts and lists too) and its
exception text before any handler sees it; the formatter then redacts the
final line again, so neither the JSON nor the text format can put a key,
token or secret into a log file (invariant 1).
"""

from __future__ import annotations

import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import orjson

from keyops.domain.redact import redact, redact_value

__all__ = ["JsonFormatter", "RedactingFilter", "RedactingFormatter", "TextFormatter", "configure", "redact"]

_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
#: Marks the handler :func:`configure` puts on the root logger, so a second call replaces it.
_OURS = "_keyops_handler"


class RedactingFilter(logging.Filter):
    """Redact what a record carries: message, ``extra`` values of any JSON-like
    shape, and the exception and stack text (rendered here, once, so the
    formatter prints the redacted copy)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRS:
                setattr(record, name, redact_value(value))
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_summary = redact(f"{record.exc_info[0].__name__}: {record.exc_info[1]}")
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RedactingFormatter(logging.Formatter):
    """The text format, redacted once more on the final formatted line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() or c in '"=' for c in value) else orjson.dumps(value).decode()
    return orjson.dumps(value, default=str).decode()


class TextFormatter(RedactingFormatter):
    """The text format: ``time LEVEL logger: message``, then the record's
    ``extra`` fields as ``name=value`` (which destination failed, and why),
    as the JSON format carries them."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{name}={_text_value(value)}"
            for name, value in record.__dict__.items()
            if name not in _STANDARD_ATTRS and not name.startswith("_") and name != "exc_summary"
        ]
        if not fields:
            return line
        head, sep, rest = line.partition("\n")
        return redact(f"{head} {' '.join(fields)}{sep}{rest}")


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
            if name not in _STANDARD_ATTRS and not name.startswith("_") and name != "exc_summary":
                doc[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            summary = getattr(record, "exc_summary", None)
            doc["error"] = summary or f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return redact(orjson.dumps(doc, default=str).decode())


def _handler(fmt: str, stream: Any) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """Uncaught exceptions in threads, logged (so redacted) instead of
    printed raw to stderr by Python's default hook."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    logging.getLogger("keyops").error("uncaught exception in thread %s", name, exc_info=exc_info)


def configure(level: str = "INFO", fmt: str = "json", stream: Any = None, *, sql_echo: bool = False) -> None:
    """Send keyops' logs (and, with ``sql_echo``, SQLAlchemy's statements) to
    stderr through the redacting filter. stdout stays clean for ``--json``.

    Other libraries' warnings and errors (asyncio, httpx, ...) would otherwise
    reach stderr through Python's last-resort handler, unredacted and not in
    the chosen format, and an uncaught exception in a thread would be printed
    raw: both go through the same redacting handler instead. Only WARNING and
    above are taken from other libraries (their INFO lines may name URLs that
    carry a secret, such as a Slack webhook's path)."""
    handler = _handler(fmt, stream)
    others = _handler(fmt, stream)
    others.setLevel(logging.WARNING)
    setattr(others, _OURS, True)
    base = logging.getLogger()
    base.handlers[:] = [h for h in base.handlers if not getattr(h, _OURS, False)] + [others]
    threading.excepthook = _log_thread_exception
    root = logging.getLogger("keyops")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    sql = logging.getLogger("sqlalchemy.engine")
    if sql_echo:
        sql.handlers[:] = [handler]
        sql.setLevel(logging.INFO)
        sql.propagate = False
