"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware timestamps everywhere.

    PostgreSQL keeps ``timestamptz`` natively; SQLite stores text and drops the
    offset. We normalise to UTC on the way in and attach UTC on the way out, so
    code always sees aware datetimes and comparisons sort the same on both.
    Naive datetimes are refused: they are always a bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# What no column can keep: NUL (PostgreSQL refuses it in text and JSONB) is
# dropped, a lone surrogate (not UTF-8) becomes U+FFFD.
_UNSTORABLE = {0: None, **{c: "\ufffd" for c in range(0xD800, 0xE000)}}


def storable(value: Any) -> Any:
    """``value`` with every string (keys too, at any depth) cleaned of what a
    store refuses. Intakes clean free text when they parse it; this is the
    last line, so that one such character can never fail a whole write.
    Printable strings, the common case, are kept as they are."""
    if isinstance(value, str):
        return value if value.isprintable() else value.translate(_UNSTORABLE)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


class JSONDocument(TypeDecorator[Any]):
    """JSON on SQLite, JSONB on PostgreSQL; strings made storable on the way in."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return storable(value)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


def utcnow() -> datetime:
    return datetime.now(UTC)
