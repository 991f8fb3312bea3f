"""Alembic environment: runs against the engine handed in by ``layers.db.Database``."""

from alembic import context

from layers.models import Base
from layers.models.base import postgis_only_filter

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from layers.db import make_engine

        url = config.get_main_option("sqlalchemy.url")
        if not url:  # run by the alembic command itself: the deployment's database
            from layers.settings import load_settings

            url = load_settings().db.url
        engine = make_engine(url)
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            include_object=postgis_only_filter(connection.dialect.name),
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
