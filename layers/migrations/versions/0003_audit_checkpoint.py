"""security: audit_checkpoint table (head of the hash-chained audit log)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:15:00
"""

import datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


GENESIS = "0" * 64


def upgrade() -> None:
    table = op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoint")),
    )
    # The single head row (id 1). An existing log (written before this table) is picked up
    # by layers.services.audit.record, which re-reads the real head when seq is 0.
    op.bulk_insert(
        table,
        [{"id": 1, "seq": 0, "hash": GENESIS, "updated_at": datetime.datetime(2000, 1, 1)}],
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoint")
