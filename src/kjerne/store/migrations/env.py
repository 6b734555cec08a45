from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

import kjerne.audit.schema  # noqa: F401  (registers the audit tables)
from kjerne.store.schema import metadata

config = context.config


def run() -> None:
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
