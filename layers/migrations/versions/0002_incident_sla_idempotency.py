"""incidents: SLA pause/extension and escalation columns, idempotency keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 17:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sla_paused_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("extension_hours", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("escalate_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("escalated_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_incidents_escalate_at"), ["escalate_at"], unique=False)
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_idempotency_keys_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_incident_id"), ["incident_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_incident_id"))
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incidents_escalate_at"))
        batch_op.drop_column("escalated_at")
        batch_op.drop_column("escalate_at")
        batch_op.drop_column("extension_hours")
        batch_op.drop_column("sla_paused_at")
