"""Migrations produce exactly the schema the models declare, on SQLite and
PostgreSQL, and survive upgrade -> downgrade -> upgrade."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from keyops.inventory import migrate
from keyops.inventory.db import make_engine
from keyops.inventory.models import Base


def _diff(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_no_drift_between_models_and_migrations(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        assert migrate.is_current(engine)
    finally:
        engine.dispose()
    assert _diff(db_url) == []


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        tables = set(inspect(engine).get_table_names())
        assert {"keys", "key_versions", "audit_events", "rotations", "findings"} <= tables
        migrate.downgrade(engine, "base")
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) <= {"alembic_version"}
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert set(inspect(engine).get_table_names()) == tables
        assert migrate.is_current(engine)
    finally:
        engine.dispose()
    assert _diff(db_url) == []


def test_single_head() -> None:
    # Several branches of work add revisions; there must be exactly one head.
    assert migrate.head_revision() is not None


def test_cheap_head_matches_alembic() -> None:
    # The CLI's schema check reads revision headers itself; it must agree with Alembic.
    from alembic.script import ScriptDirectory

    assert migrate.head_revision() == ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
