"""Engine and session handling for SQLite, PostgreSQL and MariaDB.

One `Database` per process and URL. Callers get short transactions through
`Database.session()`, and see `DatabaseUnavailable` (never a driver error)
when the server cannot be reached, so the API can answer 503.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mediahub.errors import DatabaseUnavailable

CONNECT_TIMEOUT_SECONDS = 5
LOCK_WAIT_SECONDS = 10

# Each pragma is per connection, so it is set whenever the pool opens one:
# WAL lets readers run beside the single writer, busy_timeout makes a writer
# wait for the lock instead of failing at once, NORMAL is durable enough with WAL.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
)


def _is_mysql(url: URL) -> bool:
    return url.get_backend_name() in {"mysql", "mariadb"}


def _sqlite_engine(url: URL, echo: bool) -> Engine:
    """A SQLite engine whose file folder exists and whose connections share settings."""
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _apply_sqlite_pragmas)
    return engine


def _apply_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _server_engine(url: URL, echo: bool) -> Engine:
    """A pooled engine for PostgreSQL or MariaDB that notices dropped connections."""
    if _is_mysql(url) and "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    return create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,  # a server restart costs one failed ping, not one failed request
        pool_size=5,
        max_overflow=10,
        pool_timeout=10,
        pool_recycle=1800,  # below MariaDB's wait_timeout and typical proxy idle limits
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


def _is_unavailable(exc: DBAPIError) -> bool:
    """Failures of the database rather than of the statement.

    Lost or refused connections, and (also OperationalError) lock timeouts and
    deadlocks, which are just as transient. Constraint and SQL errors are the
    caller's to handle.
    """
    if isinstance(exc, IntegrityError):
        return False
    return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)


class Database:
    """The engine and session factory for one database URL."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = make_url(url)
        if self.url.get_backend_name() == "sqlite":
            self.engine = _sqlite_engine(self.url, echo)
        else:
            self.engine = _server_engine(self.url, echo)
        # Objects stay readable after commit: services return them to the API layer.
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit when the block succeeds, roll back when it raises."""
        with self._unavailable_on_connection_errors(), self.sessionmaker() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def locked_session(self, name: str) -> Iterator[Session]:
        """`session()` holding the named lock from before its first statement until after its commit.

        For a check-then-insert that concurrent processes must not interleave (two
        identical uploads to one listing). PostgreSQL: a transaction advisory lock.
        MariaDB: GET_LOCK, held by a second pooled connection around the transaction
        (a session-level lock must be released after the commit, whatever happens).
        SQLite: the database's single write lock, taken first by a write matching no row.
        Waiting longer than LOCK_WAIT_SECONDS raises DatabaseUnavailable (retryable).
        """
        backend = self.url.get_backend_name()
        if _is_mysql(self.url):
            with self._unavailable_on_connection_errors(), self.engine.connect() as holder:
                key = "mediahub:" + hashlib.sha1(name.encode()).hexdigest()  # GET_LOCK names: 64 chars at most
                got = holder.execute(text("SELECT GET_LOCK(:key, :wait)"), {"key": key, "wait": LOCK_WAIT_SECONDS})
                if got.scalar() != 1:
                    raise DatabaseUnavailable(f"timed out waiting for lock {name!r}", code="database_unavailable")
                try:
                    with self.session() as session:
                        yield session
                finally:
                    holder.execute(text("SELECT RELEASE_LOCK(:key)"), {"key": key})
                    holder.rollback()
            return
        with self.session() as session:
            if backend == "postgresql":
                session.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{LOCK_WAIT_SECONDS}s"})
                key = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            else:
                session.execute(text("UPDATE jobs SET id = id WHERE 1 = 0"))
            yield session

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Hold the named lock for the block, without waiting for it: whether it was free. For a command that
        must not run twice at once, on any host; a process that dies lets go of it.

        PostgreSQL: a session advisory lock, MariaDB: GET_LOCK, each on a connection of its own kept for
        the block (its end, the process's included, releases the lock). SQLite: an exclusive flock on a file
        beside the database (every process of a SQLite database runs on its host).
        """
        if self.url.get_backend_name() == "sqlite":
            with self._flock(name) as held:
                yield held
            return
        mysql = _is_mysql(self.url)
        with self._unavailable_on_connection_errors(), self.engine.connect() as holder:
            if mysql:
                key: str | int = "mediahub:" + hashlib.sha1(name.encode()).hexdigest()
                held = holder.execute(text("SELECT GET_LOCK(:key, 0)"), {"key": key}).scalar() == 1
            else:
                key = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)
                held = bool(holder.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
            holder.commit()
            try:
                yield held
            finally:
                if held:
                    release = "SELECT RELEASE_LOCK(:key)" if mysql else "SELECT pg_advisory_unlock(:key)"
                    holder.execute(text(release), {"key": key})
                    holder.commit()

    @contextmanager
    def _flock(self, name: str) -> Iterator[bool]:
        database = self.url.database
        if not database or database == ":memory:":  # one process's own database
            yield True
            return
        with open(f"{database}.{name}.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held = False
            else:
                held = True
            try:
                yield held
            finally:
                if held:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def ping(self) -> None:
        """Round-trip `SELECT 1`, for readiness checks."""
        with self._unavailable_on_connection_errors(), self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection (at shutdown, or after a fork)."""
        self.engine.dispose()

    @contextmanager
    def _unavailable_on_connection_errors(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            if not _is_unavailable(exc):
                raise
            # The URL is shown without its password; the driver's first line says what failed.
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            message = f"database {self.url.render_as_string(hide_password=True)} unavailable: {reason}"
            raise DatabaseUnavailable(message, code="database_unavailable") from exc
