"""Database fixtures: an isolated database per test on each backend.

`database_url` runs a test on SQLite, PostgreSQL and MariaDB with an empty
(unmigrated) database; `migrated_database_url` and `db` with one at the head
revision. Every test gets a database of its own, created for it and dropped
after it, so tests never see each other's rows.

Running the migrations costs far more than copying their result, so each
backend migrates once per session and every test gets a copy: a SQLite file
copied with the backup API, a PostgreSQL database created from a template,
a MariaDB database whose tables are created from the migrated schema's own
`SHOW CREATE TABLE` statements.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

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


def _database_name() -> str:
    return f"mh_{secrets.token_hex(6)}"


@contextmanager
def empty_database(server: Server) -> Iterator[str]:
    """Create an empty database on `server`, yield its URL, drop it afterwards."""
    require_service(server.name, HOST, server.port)
    with _Copier.for_server(server) as copier:
        with copier.fresh(migrated=False) as url:
            yield url


class _Copier:
    """Fresh databases on one server, empty or at head; subclasses say how a migrated one is copied."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.admin = create_engine(server.url(server.admin_database), isolation_level="AUTOCOMMIT")
        self._prepared = False

    @staticmethod
    def for_server(server: Server) -> _Copier:
        return _PostgresCopier(server) if server is SERVERS["postgresql"] else _MariaDBCopier(server)

    def __enter__(self) -> _Copier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def fresh(self, *, migrated: bool) -> Iterator[str]:
        name = _database_name()
        if migrated:
            if not self._prepared:
                self._prepare()
                self._prepared = True
            self._copy_migrated(name)
        else:
            self._execute(f"CREATE DATABASE {name}")
        try:
            yield self.server.url(name)
        finally:
            self._drop(name)

    def _execute(self, *statements: str) -> None:
        with self.admin.connect() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)

    def _drop(self, name: str) -> None:
        self._execute(self.server.drop_statement.format(name=name))

    def _migrate_new(self) -> str:
        """A new database migrated to head (its engine disposed): the session's model."""
        name = _database_name()
        self._execute(f"CREATE DATABASE {name}")
        migrate.upgrade(self.server.url(name))
        return name

    def _prepare(self) -> None:
        raise NotImplementedError

    def _copy_migrated(self, name: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.admin.dispose()


class _PostgresCopier(_Copier):
    """CREATE DATABASE ... TEMPLATE: a file-level copy of the session's migrated database."""

    template: str | None = None

    def _prepare(self) -> None:
        self.template = self._migrate_new()
        # A copy needs a template nobody is connected to; no session may connect to it from here on.
        self._execute(f"ALTER DATABASE {self.template} WITH ALLOW_CONNECTIONS false")

    def _copy_migrated(self, name: str) -> None:
        self._execute(f"CREATE DATABASE {name} TEMPLATE {self.template}")

    def close(self) -> None:
        if self.template is not None:
            self._drop(self.template)
        super().close()


class _MariaDBCopier(_Copier):
    """The migrated schema replayed: its tables' CREATE statements and its alembic_version row.

    MariaDB has no template databases, and CREATE TABLE ... LIKE leaves out foreign keys.
    """

    schema: list[str]
    revisions: list[str]

    def _prepare(self) -> None:
        model = self._migrate_new()
        try:
            with self.admin.connect() as connection:
                tables = connection.execute(
                    text("SELECT table_name FROM information_schema.tables WHERE table_schema = :name "
                         "ORDER BY table_name"), {"name": model}).scalars().all()
                self.schema = [connection.execute(text(f"SHOW CREATE TABLE {model}.{table}")).one()[1]
                               for table in tables]
                self.revisions = connection.execute(
                    text(f"SELECT version_num FROM {model}.alembic_version")).scalars().all()
        finally:
            self._drop(model)

    def _drop(self, name: str) -> None:
        # A session a failed test left open holds metadata locks that would block the drop.
        with self.admin.connect() as connection:
            sessions = connection.execute(text("SELECT id FROM information_schema.processlist WHERE db = :name"),
                                          {"name": name}).scalars().all()
            for session in sessions:
                try:
                    connection.exec_driver_sql(f"KILL CONNECTION {int(session)}")
                except DBAPIError:  # it ended meanwhile
                    pass
        super()._drop(name)

    def _copy_migrated(self, name: str) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
            connection.exec_driver_sql(f"USE {name}")
            try:
                connection.exec_driver_sql("SET SESSION foreign_key_checks = 0")  # tables in any order
                for statement in self.schema:  # as the server printed it: no bind parameters in it
                    connection.exec_driver_sql(statement, execution_options={"no_parameters": True})
                for revision in self.revisions:
                    connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:revision)"),
                                       {"revision": revision})
            finally:
                connection.exec_driver_sql("SET SESSION foreign_key_checks = 1")
                connection.exec_driver_sql(f"USE {self.server.admin_database}")


class _Copiers:
    """One copier per server for the session, made on first use (a server no test needs is never asked)."""

    def __init__(self) -> None:
        self._made: dict[str, _Copier] = {}

    def get(self, backend: str) -> _Copier:
        server = SERVERS[backend]
        require_service(server.name, HOST, server.port)
        if backend not in self._made:
            self._made[backend] = _Copier.for_server(server)
        return self._made[backend]

    def close(self) -> None:
        for copier in self._made.values():
            copier.close()


@pytest.fixture(scope="session")
def _copiers() -> Iterator[_Copiers]:
    copiers = _Copiers()
    yield copiers
    copiers.close()


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def _sqlite_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; tests get copies."""
    path = tmp_path_factory.mktemp("sqlite-model") / "mediahub.db"
    migrate.upgrade(_sqlite_url(path))
    return path


def copy_sqlite(model: Path, path: Path) -> str:
    """Copy the SQLite database at `model` to `path` (the backup API: whole, WAL included); its URL."""
    source, target = sqlite3.connect(model), sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return _sqlite_url(path)


@pytest.fixture
def migrated_sqlite(_sqlite_model: Path) -> Callable[[Path], str]:
    """migrated_sqlite(path) -> URL of a SQLite database at head, made at `path`."""
    return lambda path: copy_sqlite(_sqlite_model, path)


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, _copiers: _Copiers) -> Iterator[str]:
    """URL of an isolated, empty (unmigrated) database on each backend in turn."""
    if request.param == "sqlite":
        yield _sqlite_url(tmp_path / "mediahub.db")
    else:
        with _copiers.get(request.param).fresh(migrated=False) as url:
            yield url


@pytest.fixture(params=BACKENDS)
def migrated_database_url(request: pytest.FixtureRequest, tmp_path: Path, _copiers: _Copiers,
                          _sqlite_model: Path) -> Iterator[str]:
    """URL of an isolated database at the head revision on each backend in turn."""
    if request.param == "sqlite":
        yield copy_sqlite(_sqlite_model, tmp_path / "mediahub.db")
    else:
        with _copiers.get(request.param).fresh(migrated=True) as url:
            yield url


@pytest.fixture
def db(migrated_database_url: str) -> Iterator[Database]:
    """A migrated `Database` on each backend in turn."""
    database = Database(migrated_database_url)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path, _sqlite_model: Path) -> Iterator[Database]:
    """A migrated SQLite `Database`, for fast tests that need no server backend."""
    database = Database(copy_sqlite(_sqlite_model, tmp_path / "mediahub.db"))
    yield database
    database.dispose()
