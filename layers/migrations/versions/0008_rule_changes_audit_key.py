"""privacy: pending rule changes (two-person rule), rule approver, keyed audit head

``rule_changes`` holds rule changes that lower protection until a second privacy officer
decides; ``redaction_rules.approved_by`` names that officer on the version it produced.
``audit_checkpoint`` gains the key id, the first keyed seq and the head's HMAC: a chain
written before this revision keeps its plain SHA-256 hashes, and the first write by a
process holding the audit key seals it from there on (``layers.services.audit``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_value", sa.String(length=64), nullable=True),
        sa.Column("op", sa.String(length=12), nullable=False),
        sa.Column("config", sa.Text(), nullable=True),
        sa.Column("base_rule_id", sa.Integer(), nullable=True),
        sa.Column("lowers", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_changes")),
    )
    with op.batch_alter_table("rule_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rule_changes_status"), ["status"], unique=False)
    with op.batch_alter_table("redaction_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("approved_by", sa.String(length=64), nullable=True))
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("key_from_seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.drop_column("mac")
        batch_op.drop_column("key_from_seq")
        batch_op.drop_column("key_id")
    with op.batch_alter_table("redaction_rules", schema=None) as batch_op:
        batch_op.drop_column("approved_by")
    with op.batch_alter_table("rule_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rule_changes_status"))
    op.drop_table("rule_changes")
