"""audit_events.hash_alg and seal_key_id (the chain sealed with an HMAC key)

Events written so far carry plain SHA-256 hashes: they become "sha256"
(legacy) events, which `keyops audit seal` re-seals under the audit key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hash_alg', sa.String(length=16), nullable=False, server_default='sha256'))
        batch_op.add_column(sa.Column('seal_key_id', sa.String(length=16), nullable=True))
    # Existing rows are legacy; new rows must always say which algorithm sealed them.
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.alter_column('hash_alg', server_default=None)


def downgrade() -> None:
    # Sealed events cannot be verified by the older code: downgrading keeps
    # the rows but the chain then fails verification until it is upgraded again.
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_column('seal_key_id')
        batch_op.drop_column('hash_alg')
