"""covering indexes for the map's live incident counts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:00:00
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_incidents_status_due_at", "incidents", ["status", "due_at"])
    op.create_index("ix_incidents_created_at_lon_lat", "incidents", ["created_at", "lon", "lat"])


def downgrade() -> None:
    op.drop_index("ix_incidents_created_at_lon_lat", table_name="incidents")
    op.drop_index("ix_incidents_status_due_at", table_name="incidents")
