"""layer_versions: a trigger-kept version stamp of grids, centers and admin areas

Every process caches a grid locator (a spatial index of all grids and the area hierarchy)
and used to check it against aggregates over the whole grids and centers tables before each
use: at city scale ~3-4 ms of database time per intake batch. This revision adds a 3-row
table whose row for a layer the database itself bumps (serial + 1, a new random token) in the
same transaction as every insert or delete of that layer and every update of the columns
the locator reads, so the check is one primary-key read and no write path can forget it.
PostgreSQL uses one statement-level trigger per table (TRUNCATE included); SQLite, which has
only row triggers, one per table and operation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:50:00
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: layer -> the columns whose updates change what the locator holds
VERSIONED_COLUMNS = {
    "admin_areas": ("id", "parent_id", "level"),
    "grids": ("id", "community_id", "geom_wkb"),
    "centers": ("id", "area_id", "level"),
}
PG_FUNCTION = "gridsight_bump_layer_version"


def upgrade() -> None:
    table = op.create_table(
        "layer_versions",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("serial", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_layer_versions")),
    )
    op.bulk_insert(
        table,
        [{"name": n, "serial": 0, "token": secrets.token_hex(16)} for n in VERSIONED_COLUMNS],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              UPDATE layer_versions
                 SET serial = serial + 1, token = md5(random()::text || clock_timestamp()::text)
               WHERE name = TG_TABLE_NAME;
              RETURN NULL;
            END $$""")
        for name, cols in VERSIONED_COLUMNS.items():
            op.execute(
                f"CREATE TRIGGER trg_{name}_version AFTER INSERT OR DELETE OR TRUNCATE "
                f"OR UPDATE OF {', '.join(cols)} ON {name} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()"
            )
        return
    bump = (
        "UPDATE layer_versions SET serial = serial + 1, token = lower(hex(randomblob(16))) "
        "WHERE name = '{name}'"
    )
    for name, cols in VERSIONED_COLUMNS.items():
        for op_name, event in (
            ("ins", "INSERT"),
            ("del", "DELETE"),
            ("upd", f"UPDATE OF {', '.join(cols)}"),
        ):
            op.execute(
                f"CREATE TRIGGER trg_{name}_version_{op_name} AFTER {event} ON {name} "
                f"BEGIN {bump.format(name=name)}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in VERSIONED_COLUMNS:
            op.execute(f"DROP TRIGGER IF EXISTS trg_{name}_version ON {name}")
        op.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")
    else:
        for name in VERSIONED_COLUMNS:
            for op_name in ("ins", "del", "upd"):
                op.execute(f"DROP TRIGGER IF EXISTS trg_{name}_version_{op_name}")
    op.drop_table("layer_versions")
