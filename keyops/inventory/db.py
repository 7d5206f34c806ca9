"""Engine and session handling, and the translation of database errors.

SQLite: WAL journal, foreign keys on, a busy timeout, and every transaction
started with ``BEGIN IMMEDIATE`` so two writers queue for the lock instead of
one failing half-way with "database is locked" when it upgrades from reader
to writer. PostgreSQL: psycopg 3 with a connect timeout and pre-ping.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.engine import URL, Engine, create_engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from keyops.errors import DatabaseUnavailableError


def safe_url(url: str | URL) -> str:
    """The URL with any password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as psycopg 3 URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, *, pool_size: int = 5, connect_timeout: int = 5) -> Engine:
    """SQL echo (``database.echo``) is not SQLAlchemy's ``echo=True``, whose
    handler prints to stdout and would corrupt ``--json`` output: keyops.logs
    routes the ``sqlalchemy.engine`` logger to stderr, with redaction."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"timeout": max(connect_timeout, 30), "check_same_thread": False},
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"connect_timeout": connect_timeout},
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine, *, info: dict[str, Any] | None = None) -> sessionmaker[Session]:
    """Sessions on ``engine``; ``info`` is copied into every session's
    ``Session.info`` (how the composition root hands sessions their collaborators)."""
    return sessionmaker(engine, expire_on_commit=False, info=dict(info or {}))


def is_unreachable(exc: BaseException) -> bool:
    """True for errors meaning "cannot talk to the database" (not bad SQL)."""
    if isinstance(exc, OperationalError):
        text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
        markers = (
            "connection refused",
            "could not connect",
            "connection failed",
            "timeout expired",
            "unable to open database",
            "could not translate host name",
            "no such host",
            "name or service not known",
            "does not exist",
            "server closed the connection",
            "password authentication failed",
            "no password supplied",
            "database is locked",
            "readonly database",
            "disk i/o error",
        )
        return any(m in text for m in markers)
    return False


@contextlib.contextmanager
def translate_db_errors(url: str) -> Iterator[None]:
    """Turn "the database is not there" into one clear line naming the setting."""
    try:
        yield
    except DBAPIError as exc:
        if is_unreachable(exc):
            detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
            raise DatabaseUnavailableError(
                f"cannot use the database at {safe_url(url)}: {detail}; "
                f"check database.url (KEYOPS_DATABASE_URL) and that the server is running"
            ) from None
        raise
