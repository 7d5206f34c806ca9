"""Alembic environment for keyops.

keyops runs migrations itself (``keyops db upgrade``), handing a connection in
``config.attributes["connection"]``. Plain ``alembic`` also works: it reads
``KEYOPS_DATABASE_URL`` (or the default SQLite file) through keyops' settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from keyops.inventory.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies tables.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from keyops.config import load_settings
    from keyops.inventory.db import make_engine

    settings = load_settings()
    engine = make_engine(settings.database.url)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("keyops migrations run online only: use `keyops db upgrade`")
run_migrations_online()
