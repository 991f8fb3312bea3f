"""layer_versions: feature stamps of the published layers and of the camera viewsheds

The stamps of revision 0006 follow only what the grid locator reads, so a cache of what the
map shows (GeoJSON ETags, the OGC pages, the camera coverage per grid) keyed on them, or on
count + max id, misses a camera's status or position change and a renamed grid. This
revision adds one row per published layer whose stamp the database bumps on every insert or
delete of that table and every update that changes one of the columns the layer shows, plus
``camera_views`` (position and cone only), from which the coverage is computed, so a camera
going offline does not recompute the coverage.

Inserts, deletes (and TRUNCATE on PostgreSQL) bump the stamp once per statement on
PostgreSQL and once per row on SQLite, as in 0006. Updates bump it once per row whose listed
columns really change (``WHEN OLD IS DISTINCT FROM NEW``): a camera heartbeat that rewrites
the same status leaves the stamp alone.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10 09:00:00
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_CAMERA_SHOWN = ("id", "gb_id", "name", "cls", "ptz_type", "use_type", "lon", "lat", "azimuth",
                 "fov", "range_m", "owner", "status", "grid_id")  # fmt: skip

#: stamp name -> (table, the columns whose changes bump it)
FEATURE_VERSIONS = {
    "area_features": ("admin_areas", ("id", "code", "name", "level", "parent_id", "geom_wkb")),
    "grid_features": ("grids", ("id", "code", "name", "community_id", "geom_wkb")),
    "center_features": (
        "centers",
        ("id", "name", "level", "area_id", "lon", "lat", "phone", "hours", "services"),
    ),
    "camera_features": ("cameras", _CAMERA_SHOWN),
    "camera_views": ("cameras", ("id", "lon", "lat", "azimuth", "fov", "range_m")),
}
PG_FUNCTION = "gridsight_bump_named_version"


def _changed(cols: tuple[str, ...], distinct: str) -> str:
    return " OR ".join(f"OLD.{c} {distinct} NEW.{c}" for c in cols)


def upgrade() -> None:
    table = sa.table(
        "layer_versions",
        sa.column("name", sa.String),
        sa.column("serial", sa.Integer),
        sa.column("token", sa.String),
    )
    op.bulk_insert(
        table,
        [{"name": n, "serial": 0, "token": secrets.token_hex(16)} for n in FEATURE_VERSIONS],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              UPDATE layer_versions
                 SET serial = serial + 1, token = md5(random()::text || clock_timestamp()::text)
               WHERE name = TG_ARGV[0];
              RETURN NULL;
            END $$""")
        for name, (tbl, cols) in FEATURE_VERSIONS.items():
            op.execute(
                f"CREATE TRIGGER trg_{name}_write AFTER INSERT OR DELETE OR TRUNCATE ON {tbl} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}('{name}')"
            )
            op.execute(
                f"CREATE TRIGGER trg_{name}_upd AFTER UPDATE OF {', '.join(cols)} ON {tbl} "
                f"FOR EACH ROW WHEN ({_changed(cols, 'IS DISTINCT FROM')}) "
                f"EXECUTE FUNCTION {PG_FUNCTION}('{name}')"
            )
        return
    bump = (
        "UPDATE layer_versions SET serial = serial + 1, token = lower(hex(randomblob(16))) "
        "WHERE name = '{name}'"
    )
    for name, (tbl, cols) in FEATURE_VERSIONS.items():
        for op_name, event in (
            ("ins", "INSERT"),
            ("del", "DELETE"),
            ("upd", f"UPDATE OF {', '.join(cols)}"),
        ):
            when = f" WHEN {_changed(cols, 'IS NOT')}" if op_name == "upd" else ""
            op.execute(
                f"CREATE TRIGGER trg_{name}_{op_name} AFTER {event} ON {tbl}{when} "
                f"BEGIN {bump.format(name=name)}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, (tbl, _cols) in FEATURE_VERSIONS.items():
            op.execute(f"DROP TRIGGER IF EXISTS trg_{name}_write ON {tbl}")
            op.execute(f"DROP TRIGGER IF EXISTS trg_{name}_upd ON {tbl}")
        op.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")
    else:
        for name in FEATURE_VERSIONS:
            for op_name in ("ins", "del", "upd"):
                op.execute(f"DROP TRIGGER IF EXISTS trg_{name}_{op_name}")
    names = ", ".join(f"'{n}'" for n in FEATURE_VERSIONS)
    op.execute(f"DELETE FROM layer_versions WHERE name IN ({names})")
