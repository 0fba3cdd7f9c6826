"""Schema migrations, driven from code (`mediahub db upgrade`, tests, start-up).

The Alembic configuration is built here instead of read from an alembic.ini,
so an installed package migrates any URL without files beside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from mediahub.db.models import Base
from mediahub.db.session import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config for `url` using the migrations shipped in the package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Config values go through ConfigParser interpolation: a literal % (say in a
    # URL-encoded password) must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


@contextmanager
def migrated(url: str) -> Iterator[Database]:
    """A `Database` on `url` upgraded to head, disposed when the block ends (tests, benches)."""
    upgrade(url)
    database = Database(url)
    try:
        yield database
    finally:
        database.dispose()


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database is at, or None for an unmigrated database."""
    database = Database(url)
    try:
        with database.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        database.dispose()


def check_schema_matches_models(url: str) -> list[Any]:
    """Differences between the live schema and the models (empty when in sync).

    Each entry is an Alembic autogenerate diff tuple (or a list of them for
    column modifications), e.g. ("add_index", Index(...)).
    """
    database = Database(url)
    try:
        with database.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        database.dispose()
