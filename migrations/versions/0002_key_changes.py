"""key change log (verify-cache invalidation)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import keyops.inventory.types


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('key_changes',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('key_id', sa.String(length=36), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('changed_at', keyops.inventory.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_key_changes'))
    )
    with op.batch_alter_table('key_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_key_changes_changed_at'), ['changed_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('key_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_key_changes_changed_at'))
    op.drop_table('key_changes')
