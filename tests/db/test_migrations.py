"""The migrations build exactly the schema the models describe, on every backend."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from mediahub.db import migrate
from mediahub.db.models import Base

APP_TABLES = set(Base.metadata.tables)


def _table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _head(url: str) -> str | None:
    return ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    assert migrate.current(database_url) is None

    migrate.upgrade(database_url)
    assert migrate.current(database_url) == _head(database_url)
    # No dialect noise needs filtering: SQLite, PostgreSQL and MariaDB all
    # compare clean (types included), so any difference at all is a real one.
    assert migrate.check_schema_matches_models(database_url) == []

    migrate.downgrade(database_url, "base")
    assert migrate.current(database_url) is None
    # Alembic keeps its own (now empty) bookkeeping table; nothing of ours is left.
    assert _table_names(database_url) <= {"alembic_version"}

    migrate.upgrade(database_url)
    assert APP_TABLES <= _table_names(database_url)
    assert migrate.check_schema_matches_models(database_url) == []


def test_schema_check_reports_drift(database_url: str) -> None:
    """Guards against a check that passes because it compares nothing."""
    migrate.upgrade(database_url)
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            # MariaDB needs the table named; the others reject it.
            on_table = " ON media_items" if engine.dialect.name == "mysql" else ""
            connection.execute(text(f"DROP INDEX ix_media_sha256{on_table}"))
    finally:
        engine.dispose()

    differences = migrate.check_schema_matches_models(database_url)

    assert [(kind, index.name) for kind, index in differences] == [("add_index", "ix_media_sha256")]


def test_percent_in_url_survives_config_interpolation() -> None:
    url = "postgresql+psycopg://user:p%40ss@db.example/media"
    assert migrate.alembic_config(url).get_main_option("sqlalchemy.url") == url


def test_the_migrated_databases_tests_get_are_at_head_and_match_the_models(migrated_database_url: str) -> None:
    """Tests get copies of a database migrated once per session (tests/support/databases.py): the copy
    must be what the migrations make."""
    assert migrate.current(migrated_database_url) == _head(migrated_database_url)
    assert _table_names(migrated_database_url) == APP_TABLES | {"alembic_version"}
    assert migrate.check_schema_matches_models(migrated_database_url) == []
