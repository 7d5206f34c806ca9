"""Where the inventory is, and who may create it.

A read-only command (``keys list``, ``audit verify``, ``db current``...)
must not leave a new, empty ``keyops.db`` behind in whatever directory it was
run from, nor migrate keyops' tables into a PostgreSQL database it was
pointed at: it says which inventory it looked for and how to point at one.
Only ``serve``, ``db upgrade`` and writing commands such as ``keys issue``
create the schema, and a writing command creates it only in an empty
database (a new SQLite file, a PostgreSQL database or schema with no tables).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from sqlalchemy import inspect, make_url
from sqlalchemy.engine import Engine

from keyops.errors import DatabaseUnavailableError
from keyops.inventory.db import normalise_url, safe_url

HOW_TO_POINT = "point at your inventory with KEYOPS_DATABASE_URL or database.url in --config FILE"


class Access(Enum):
    """What a command may do to the inventory's schema."""

    READ = "read"  # never create, never migrate
    WRITE = "write"  # migrate keyops' schema; create it only in an empty database
    CREATE = "create"  # serve, db upgrade: create or migrate


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (absolute), or None for PostgreSQL and memory."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).resolve()


def describe(url: str, source: str) -> str:
    """Which inventory, for messages: the file or URL and where the setting
    came from (``source``: KEYOPS_DATABASE_URL, a config file, the default)."""
    file = sqlite_file(url)
    where = str(file) if file is not None else safe_url(url)
    return f"{where} (from {source})"


def check_exists(url: str, source: str, access: Access) -> None:
    """Before connecting: a read-only command refuses a SQLite file that is
    not there (connecting would create it)."""
    file = sqlite_file(url)
    if access is Access.READ and file is not None and not file.exists():
        raise DatabaseUnavailableError(
            f"no inventory at {describe(url, source)}; {HOW_TO_POINT}, or create one here with "
            f"keyops keys issue or keyops db upgrade"
        )


def check_schema(engine: Engine, url: str, source: str, access: Access, revision: str | None, head: str | None) -> bool:
    """After connecting, given the database's schema ``revision``: True when
    the caller should migrate; raises when this command may not."""
    if revision == head:
        return False
    if access is Access.CREATE:
        return True
    if revision is None:
        with engine.connect() as conn:
            others = inspect(conn).get_table_names()
        if access is Access.READ or others:
            has = f"has {len(others)} other table(s) but " if others else "is empty: it has "
            raise DatabaseUnavailableError(
                f"the database at {describe(url, source)} {has}no keyops tables; {HOW_TO_POINT}, "
                f"or create keyops' tables in it with keyops db upgrade"
            )
        return True
    if access is Access.READ:
        raise DatabaseUnavailableError(
            f"the inventory at {describe(url, source)} is at schema revision {revision}, this keyops needs "
            f"{head}; run keyops db upgrade"
        )
    return True
