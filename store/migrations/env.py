"""Alembic environment for callflow's store.

Run time: ``Store.upgrade`` hands Alembic an open connection (``config.attributes``),
so the engine's own settings (SQLite pragmas, PostgreSQL advisory lock) apply and
no alembic.ini is read. Development: ``alembic -c store/alembic.ini ...`` with the
URL from ``-x url=...`` or ``CALLFLOW_DATABASE_URL``.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from callflow.store.db import migration_options, normalize_url

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = (context.get_x_argument(as_dictionary=True).get("url")
           or config.get_main_option("sqlalchemy.url")
           or os.environ.get("CALLFLOW_DATABASE_URL"))
    if not url:
        raise SystemExit("give the database: -x url=... or CALLFLOW_DATABASE_URL")
    return url


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, **migration_options())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = create_engine(normalize_url(database_url()), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            run_on(conn)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=normalize_url(database_url()), literal_binds=True,
                      **migration_options())
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
