"""Schema migrations (Alembic), run programmatically.

The migration scripts live in ``migrations/`` at the top of the source tree
and are shipped inside the wheel as ``keyops/_migrations``. On PostgreSQL an
advisory lock serialises concurrent upgrades, so several replicas starting at
once do not race to create the same tables.

Every CLI command checks that the schema is current; importing Alembic for
that costs more than the command itself, so the check reads the revision
headers of the scripts and the ``alembic_version`` table directly, and Alembic
is imported only to migrate.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

_MIGRATION_LOCK_ID = 0x6B65796F7073  # "keyops"
_REVISION_RE = re.compile(r"^revision(?:\s*:\s*str)?\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_RE = re.compile(r"^down_revision(?:\s*:[^=]+)?\s*=\s*(?:['\"]([^'\"]+)['\"]|None)", re.MULTILINE)


def migrations_dir() -> Path:
    packaged = resources.files("keyops").joinpath("_migrations")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest revision: the one no other revision names as its parent.

    Raises RuntimeError when the scripts have several heads (two branches of
    work each added a revision): that must be fixed before release."""
    revisions: dict[str, str | None] = {}
    for path in sorted((migrations_dir() / "versions").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        rev, down = _REVISION_RE.search(source), _DOWN_RE.search(source)
        if rev is None or down is None:
            continue
        revisions[rev.group(1)] = down.group(1)
    parents = {d for d in revisions.values() if d is not None}
    heads = sorted(r for r in revisions if r not in parents)
    if len(heads) > 1:
        raise RuntimeError(f"the migration scripts have several heads ({', '.join(heads)}): merge them")
    return heads[0] if heads else None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def known_revisions() -> list[str]:
    """Every revision id the migration scripts define, oldest first."""
    found: list[str] = []
    for path in sorted((migrations_dir() / "versions").glob("*.py")):
        match = _REVISION_RE.search(path.read_text(encoding="utf-8"))
        if match:
            found.append(match.group(1))
    return found


def _run(engine: Engine, action: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    from keyops.errors import InvalidInputError

    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        cfg = alembic_config(conn)
        try:
            if action == "upgrade":
                command.upgrade(cfg, revision)
            else:
                command.downgrade(cfg, revision)
        except CommandError as exc:
            # A revision that does not exist, or one on the wrong side of the
            # current one: the user's input, not a bug. Nothing was migrated.
            conn.rollback()
            detail = " ".join(str(exc).split())
            raise InvalidInputError(
                f"cannot {action} to {revision!r}: {detail}; known revisions: "
                f"{', '.join(known_revisions())} (also head, base, +N, -N; see keyops db current)"
            ) from None
        conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str = "-1") -> None:
    _run(engine, "downgrade", revision)


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
