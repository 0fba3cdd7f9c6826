"""Database fixtures: an isolated, empty database per test on each backend.

`database_url` runs a test on SQLite, PostgreSQL and MariaDB. The server
backends get a fresh `mh_<random>` database created for the test and dropped
after it, so tests never see each other's rows and can run in parallel.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mediahub.db import migrate
from mediahub.db.session import Database
from tests.support.services import require_service

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Server:
    """How to reach one database server and make throwaway databases on it."""

    name: str
    port: int
    url_prefix: str  # everything up to the database name
    admin_database: str
    drop_statement: str

    def url(self, database: str) -> str:
        return f"{self.url_prefix}/{database}"


SERVERS = {
    "postgresql": Server(
        name="PostgreSQL",
        port=5432,
        url_prefix=f"postgresql+psycopg://postgres@{HOST}:5432",
        admin_database="test",
        # FORCE ends sessions a failed test left open, which would block the drop.
        drop_statement="DROP DATABASE IF EXISTS {name} WITH (FORCE)",
    ),
    "mariadb": Server(
        name="MariaDB",
        port=3306,
        url_prefix=f"mysql+pymysql://root@{HOST}:3306",
        admin_database="test",
        drop_statement="DROP DATABASE IF EXISTS {name}",
    ),
}


def _throwaway_database(server: Server) -> Iterator[str]:
    """Create an empty database on `server`, yield its URL, drop it afterwards."""
    require_service(server.name, HOST, server.port)
    name = f"mh_{secrets.token_hex(6)}"
    admin = create_engine(server.url(server.admin_database), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        yield server.url(name)
        with admin.connect() as connection:
            connection.execute(text(server.drop_statement.format(name=name)))
    finally:
        admin.dispose()


def _sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'mediahub.db'}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an isolated, empty (unmigrated) database on each backend in turn."""
    if request.param == "sqlite":
        yield _sqlite_url(tmp_path)
    else:
        yield from _throwaway_database(SERVERS[request.param])


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated `Database` on each backend in turn."""
    with migrate.migrated(database_url) as database:
        yield database


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite `Database`, for fast tests that need no server backend."""
    with migrate.migrated(_sqlite_url(tmp_path)) as database:
        yield database
