"""Alembic environment: run migrations online against the configured URL.

`mediahub.db.migrate` builds the Alembic config in code and passes the URL as
`sqlalchemy.url`; the engine comes from `Database`, so migrations connect with
the same settings (SQLite pragmas, MariaDB utf8mb4, timeouts) as the service.
Offline (`--sql`) mode is not supported.
"""

from __future__ import annotations

from alembic import context

from mediahub.db.models import Base
from mediahub.db.session import Database


def run_migrations_online() -> None:
    if context.is_offline_mode():
        raise RuntimeError("MediaHub migrations run online only; offline --sql mode is not supported")
    database = Database(context.config.get_main_option("sqlalchemy.url"))
    try:
        with database.engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                compare_type=True,
                # SQLite cannot ALTER most things: batch mode recreates the table instead.
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        database.dispose()


run_migrations_online()
