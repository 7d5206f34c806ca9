"""key_versions.last_used_at (usage-aware retirement of previous versions)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import keyops.inventory.types


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('key_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_used_at', keyops.inventory.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('key_versions', schema=None) as batch_op:
        batch_op.drop_column('last_used_at')
