"""cases: one per key or cluster episode; findings link to their case and
record the enforcement mode of their decision

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import keyops.inventory.types


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('cases',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=36), nullable=True),
    sa.Column('cluster_id', sa.String(length=36), nullable=True),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('enforcement', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('finding_count', sa.Integer(), nullable=False),
    sa.Column('members', sa.Integer(), nullable=False),
    sa.Column('noticed_severity', sa.String(length=16), nullable=False),
    sa.Column('opened_at', keyops.inventory.types.UTCDateTime(), nullable=False),
    sa.Column('last_seen_at', keyops.inventory.types.UTCDateTime(), nullable=False),
    sa.Column('created_at', keyops.inventory.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', keyops.inventory.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['keys.id'], name=op.f('fk_cases_key_id_keys'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_cluster_id'), ['cluster_id'], unique=False)
        batch_op.create_index('ix_cases_key_status', ['key_id', 'status'], unique=False)
        batch_op.create_index('ix_cases_status', ['status'], unique=False)

    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('case_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('enforcement', sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f('ix_findings_case_id'), ['case_id'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_findings_case_id_cases'), 'cases', ['case_id'], ['id'], ondelete='SET NULL'
        )


def downgrade() -> None:
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_findings_case_id_cases'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_findings_case_id'))
        batch_op.drop_column('enforcement')
        batch_op.drop_column('case_id')

    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_status')
        batch_op.drop_index('ix_cases_key_status')
        batch_op.drop_index(batch_op.f('ix_cases_cluster_id'))

    op.drop_table('cases')
