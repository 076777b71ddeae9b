"""Shared fixtures: databases (SQLite and PostgreSQL) and nothing else product-specific.

PostgreSQL for tests comes from ``CALLFLOW_TEST_POSTGRES_URL`` if set (its user must
be allowed to CREATE DATABASE), else from a throwaway cluster started from Debian's
binaries (/usr/lib/postgresql/*/bin) in a temp dir, else the PostgreSQL variants
skip, saying why. Each test gets a fresh, empty database on either backend.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from callflow.store.db import Store, open_store
from callflow.store.models import Base

PG_PORT_BASE = 29432
PG_SUPERUSER = "postgres"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as PostgreSQL binds: a previous run's TIME_WAIT connections do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port(after: int | None = None) -> int:
    """A free port for this worker's cluster: its own run of 20 above ``PG_PORT_BASE``
    (pytest-xdist workers start their clusters at the same moment, and "the first free
    port" was then the same port for all of them), or the next free one after ``after``,
    else whatever the OS gives."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = PG_PORT_BASE + 20 * (int(worker) if worker.isdigit() else 0)
    start = first if after is None else after + 1
    for port in range(start, first + 20):
        if _port_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        free: int = sock.getsockname()[1]
        return free


#: What PostgreSQL's log says when another process took the port between our check and
#: its bind (another test run on the machine): start again on another port.
_PORT_TAKEN = ("could not bind", "Address already in use", "could not create any TCP/IP sockets")
_START_TRIES = 5


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temp dir, tuned for speed (no fsync), gone after the run.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres``
    system user and every server command runs through ``runuser``.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="callflow-pg-"))
        self.data = self.root / "data"
        self.port = _pick_port()
        self.as_user: list[str] = []
        self.watchdog: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        cmd = [*self.as_user, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                               f"{done.stdout}\n{done.stderr}\n{self._log_tail()}")

    def _log_tail(self, whole: bool = False) -> str:
        log = self.root / "server.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return text if whole else text[-3000:]

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_SUPERUSER,
                  "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync")
        for attempt in range(1, _START_TRIES + 1):
            options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                       "-c max_connections=100")
            log_before = len(self._log_tail(whole=True))
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                          str(self.root / "server.log"), "-o", options, "-w", "-t", "60",
                          "start")
                break
            except RuntimeError:
                said = self._log_tail(whole=True)[log_before:]
                if attempt == _START_TRIES or not any(m in said for m in _PORT_TAKEN):
                    raise
                self.port = _pick_port(after=self.port)
        self._start_watchdog()

    def _stop_command(self) -> list[str]:
        return [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m",
                "immediate", "-w", "stop"]

    def _start_watchdog(self) -> None:
        """Stop this cluster even if pytest dies without running finalizers (SIGKILL, timeout)."""
        stop = " ".join(shlex.quote(arg) for arg in self._stop_command())
        script = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                  f"{stop}; rm -rf {shlex.quote(str(self.root))}")
        self.watchdog = subprocess.Popen(
            ["sh", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.terminate()
            self.watchdog.wait(timeout=10)
        try:
            self._run(*self._stop_command()[len(self.as_user):])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{PG_SUPERUSER}@127.0.0.1:{self.port}/postgres"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """An admin URL of a PostgreSQL server for this test run."""
    configured = os.environ.get("CALLFLOW_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL not available: set CALLFLOW_TEST_POSTGRES_URL or install "
                    "postgresql (no /usr/lib/postgresql/*/bin/initdb)")
    cluster = ThrowawayPostgres(bindir)
    started = time.monotonic()
    try:
        cluster.start()
        print(f"\n[postgres] throwaway cluster on port {cluster.port} "
              f"up in {time.monotonic() - started:.2f}s ({bindir})")
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A new empty database on the test server, dropped afterwards."""
    admin_url = make_url(postgres_url).set(drivername="postgresql+psycopg")
    name = f"cf_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.pg)])
def backend(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL (marked ``pg``)."""
    name: str = request.param
    return name


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL (for tests of migrations and of opening)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'callflow.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture(scope="session")
def shared_postgres_url(postgres_url: str) -> Iterator[str]:
    """One migrated PostgreSQL database for the whole run; ``store`` empties it per test.

    Creating and migrating a database costs ~0.4 s, emptying one ~0.02 s.
    """
    admin_url = make_url(postgres_url).set(drivername="postgresql+psycopg")
    name = f"cf_shared_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = admin_url.set(database=name).render_as_string(hide_password=False)
        open_store(url).close()
        yield url
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite file that ``store`` copies (a copy is ~100x cheaper)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "callflow.db"
    open_store(f"sqlite:///{path}").close()
    return path


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty, migrated Store on each backend."""
    if backend == "sqlite":
        target = tmp_path / "state" / "callflow.db"
        target.parent.mkdir()
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_file"), target)
        url = f"sqlite:///{target}"
    else:
        url = request.getfixturevalue("shared_postgres_url")
    opened = open_store(url)
    try:
        if backend == "postgres":
            tables = ", ".join(Base.metadata.tables)
            with opened.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        yield opened
    finally:
        opened.close()
