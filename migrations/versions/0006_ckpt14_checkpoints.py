"""detection_checkpoints (the engine's state, restored at start) and
findings.dedup_key (a finding replayed after a restart is stored once)

Revision ID: 0006_ckpt14
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import keyops.inventory.types


revision: str = '0006_ckpt14'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('detection_checkpoints',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('format', sa.Integer(), nullable=False),
    sa.Column('position', sa.String(length=200), nullable=False),
    sa.Column('keys', sa.Integer(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('written_at', keyops.inventory.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_detection_checkpoints'))
    )
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dedup_key', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_findings_dedup_key'), ['dedup_key'])


def downgrade() -> None:
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_findings_dedup_key'), type_='unique')
        batch_op.drop_column('dedup_key')
    op.drop_table('detection_checkpoints')
