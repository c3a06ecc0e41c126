"""Alembic environment: run from code by ``trackstore.db.upgrade`` (or the alembic CLI)."""

from alembic import context
from sqlalchemy import engine_from_config, pool

import trackstore.schema as schema

config = context.config
target_metadata = schema.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                    prefix="sqlalchemy.", poolclass=pool.NullPool)
        with engine.connect() as connection:
            _run(connection)
    else:
        _run(connection)


def _run(connection) -> None:
    # views are not managed by Alembic: they are re-applied from trackstore/views after upgrade
    # trackstore upgrade runs each migration in its own transaction: DuckDB refuses to ALTER a table
    # that an earlier statement of the same transaction UPDATEd (0002 then 0003 on links)
    context.configure(connection=connection, target_metadata=target_metadata,
                      transaction_per_migration=bool(config.attributes.get("transaction_per_migration")),
                      include_object=lambda obj, name, type_, reflected, compare_to: type_ != "view")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
