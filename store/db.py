"""Opening the database, migrating it, and the one place SQLAlchemy errors become ours.

SQLite is the default (one file, zero set-up); PostgreSQL is for several engines
sharing one database. The differences are handled here so the rest of callflow
sees one behaviour:

- SQLite: foreign keys on, WAL journal, a busy timeout, and write transactions
  opened with ``BEGIN IMMEDIATE`` so a read-then-write (an upsert, a task claim)
  can never deadlock against another writer or act on a stale snapshot. The file
  (password hashes, caller numbers) is its owner's alone, 0600, created so before
  SQLite opens it; SQLite gives its ``-wal`` and ``-shm`` files the same mode.
- PostgreSQL: ``postgresql://`` means psycopg 3; connections are pre-pinged;
  migrations hold an advisory lock so engines starting together migrate once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.orm import Session

from callflow.errors import StoreError, StoreUnavailable
from callflow.settings import PRIVATE_FILE_MODE

from .models import Base
from .types import UTCDateTime

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: Where the Alembic scripts live inside the installed package.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Execution option that marks a connection as a writer (SQLite: BEGIN IMMEDIATE).
_WRITE_OPTION = "callflow_write"
#: pg_advisory_xact_lock key for migrations ("callflow" in ASCII, truncated to int64).
_MIGRATION_LOCK_KEY = 0x63616C6C666C6F77
#: Alembic's ``context``/``op`` are module-global proxies: one migration per process at a time.
_ALEMBIC_LOCK = threading.Lock()
SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 5
POOL_TIMEOUT_S = 10.0


def _describe(exc: SQLAlchemyError) -> str:
    """The driver's own message when there is one (it names the constraint), else SQLAlchemy's."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        # one line: drivers add hints on lines of their own ("Is the server running…")
        return f"{type(exc.orig).__name__}: {' '.join(str(exc.orig).split())}"
    if isinstance(exc, StatementError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}"
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """The single point where SQLAlchemy and Alembic exceptions become ``StoreError``."""
    try:
        yield
    except (OperationalError, InterfaceError, DisconnectionError) as exc:
        detail = _describe(exc)
        logger.warning("store: %s failed, database unavailable: %s", what, detail)
        raise StoreUnavailable(f"{what} failed: {detail}") from exc
    except SQLAlchemyError as exc:
        detail = _describe(exc)
        logger.warning("store: %s failed: %s", what, detail)
        raise StoreError(f"{what} failed: {detail}") from exc
    except CommandError as exc:
        logger.error("store: %s failed: %s", what, exc)
        raise StoreError(f"{what} failed: {exc}") from exc


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Autogenerate writes UTCDateTime as a plain aware DateTime: migrations import no app types."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def migration_options() -> dict[str, Any]:
    """Alembic context options, shared by env.py and the schema-drift test."""
    return {
        "target_metadata": Base.metadata,
        "compare_type": True,
        "render_item": render_item,
        # SQLite cannot ALTER most things; autogenerate then emits batch (copy) operations.
        "render_as_batch": True,
    }


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic Config built in code: no alembic.ini is needed at run time."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def normalize_url(url: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` selects psycopg 3 (the driver we ship)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {url!r}: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:") or "memory" in str(parsed.query.get("mode")):
            raise StoreError(
                "an in-memory SQLite database cannot be shared by the engine's worker threads;"
                " give a file path, e.g. sqlite:////tmp/callflow.db"
            )
        return parsed
    raise StoreError(f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://...")


def _sqlite_engine(url: URL) -> Engine:
    assert url.database is not None
    try:
        _private_file(Path(url.database).expanduser().resolve())
    except OSError as exc:
        raise StoreError(f"cannot create the SQLite database {url.database} "
                         f"({exc.strerror})") from None
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling begins late (only before DML); we emit
        # BEGIN ourselves in "begin" below so a transaction really covers its reads.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writer = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


def _private_file(path: Path) -> None:
    """The database file, and its ``-wal``/``-shm`` if a run left them, as 0600 (an
    earlier run may have made them readable by every local user)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if part.exists():
            part.chmod(PRIVATE_FILE_MODE)


def _postgres_engine(url: URL) -> Engine:
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_timeout=POOL_TIMEOUT_S,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )


class Store:
    """The database of one callflow deployment.

    Repository functions (``callflow.store.repo``) take a ``Session`` so several of
    them can share one transaction; ``run`` is the one-call form the runtime uses
    from a worker thread: ``await asyncio.to_thread(store.run, repo.get_call, uid)``.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{_WRITE_OPTION: True})

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)})"

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        ``readonly`` sessions never commit and, on SQLite, do not take the
        write lock, so board and report queries never wait for the engine's writes.
        Database errors leave as ``StoreError``.
        """
        bind = self.engine if readonly else self._writer
        with translate_errors("database transaction"), Session(bind, expire_on_commit=False) as s:
            if readonly:
                # Closing (not rolling back) ends the transaction without expiring
                # the objects read, so they stay usable after the block.
                yield s
            else:
                with s.begin():
                    yield s

    def writer_connection(self) -> Connection:
        """A connection whose transactions write (SQLite: ``BEGIN IMMEDIATE``), for the
        rare caller that must set something on it before it begins (the store probe)."""
        return self._writer.connect()

    @property
    def busy_timeout_ms(self) -> int:
        """How long a SQLite connection waits for another writer's lock."""
        return int(SQLITE_BUSY_TIMEOUT_S * 1000)

    def run(self, fn: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Call one repository function in its own write transaction."""
        with self.session() as s:
            return fn(s, *args, **kwargs)

    def read(
        self, fn: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Call one repository query in a read-only transaction."""
        with self.session(readonly=True) as s:
            return fn(s, *args, **kwargs)

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (Alembic), once even if engines start together.

        PostgreSQL: an advisory lock; SQLite: the write lock (``BEGIN IMMEDIATE``) is
        taken before Alembic reads the current revision, so a second process waits
        and then finds nothing to do.
        """
        what = f"migrating the database to {revision}"
        with translate_errors(what), _ALEMBIC_LOCK, self._writer.begin() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
            command.upgrade(alembic_config(conn), revision)

    def downgrade(self, revision: str) -> None:
        """Take the schema back to ``revision`` (``base`` drops every table)."""
        what = f"downgrading the database to {revision}"
        with translate_errors(what), _ALEMBIC_LOCK, self._writer.begin() as conn:
            command.downgrade(alembic_config(conn), revision)

    def ping(self, timeout_s: float = 2.0) -> bool:
        """Is the database answering? For /healthz: never raises, never waits long."""
        try:
            with self.engine.connect() as conn, conn.begin():
                if self.dialect == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            logger.warning("store: ping failed: %s", _describe(exc))
            return False
        return True

    def close(self) -> None:
        """Close every pooled connection (the Store cannot be used afterwards)."""
        self.engine.dispose()


def open_store(url: str, *, migrate: bool = True) -> Store:
    """Open (and by default migrate to head) the database at ``url``.

    A SQLite file's directory is created. A database that is newer than this code
    (an unknown revision) is refused with ``StoreError`` rather than used blindly.
    """
    parsed = normalize_url(url)
    with translate_errors("opening the database"):
        engine = _sqlite_engine(parsed) if parsed.get_backend_name() == "sqlite" else (
            _postgres_engine(parsed))
    store = Store(engine)
    if migrate:
        try:
            store.upgrade()
        except BaseException:
            store.close()
            raise
    logger.info("store: opened %r", store)
    return store
