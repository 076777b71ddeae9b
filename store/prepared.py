"""The writer's hot statements, compiled once per dialect and run on the DBAPI cursor.

Why (issue 20): the store writer runs ~45 statements a call, and SQLAlchemy's
``Connection.execute`` costs ~140 us each on this box (cache-key walk, execution
context, result object), the same insert on the raw cursor ~13 us. A ``Prepared``
statement is an ordinary Core statement, compiled by SQLAlchemy itself once per
dialect (SQLite, PostgreSQL via psycopg): the SQL text, the order of its bind names
and the bind processors of their types (our ``UTCDateTime``, ``JSON``, ``Boolean``) are
what SQLAlchemy would use for that statement, so the values written are the same
bytes (tests/unit/store/test_prepared.py writes random records both ways and compares
every row). Python-side column defaults the statement leaves to SQLAlchemy
(``created_at``) are computed as SQLAlchemy does, per execution.

It runs on the cursor of the session's own connection: the same transaction, so the
exactly-once marks and a rollback cover these writes as before. Errors leave as
SQLAlchemy's would (``DBAPIError.instance``: ``OperationalError`` stays "unavailable",
``IntegrityError`` a refusal; a bind processor's refusal a ``StatementError``), and a
connection the driver says is gone is invalidated, as ``Connection`` does.

Only for statements without expanding parameters, escaped bind names or server-side
defaults to prefetch (checked when compiled); everything else stays on Core.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]
#: where a prepared statement runs: a Session's transaction, or a Connection's
Executor = Session | Connection


class _NoContext:
    """What a Python column default gets instead of SQLAlchemy's execution context: our
    defaults (``utcnow``) take none; one that reads the context fails loudly here."""

    __slots__ = ()


_NO_CONTEXT = _NoContext()


@dataclass(frozen=True)
class Compiled:
    """One statement as SQLAlchemy compiled it for one dialect."""

    sql: str
    positional: bool
    #: per bind position (positional) or bind name (named): name and its processor
    binds: tuple[tuple[str, Processor | None], ...]
    #: the values of binds the statement carries itself (a subquery's LIMIT 1)
    fixed: Mapping[str, Any]
    #: Python-side column defaults SQLAlchemy would compute per execution: key, callable
    defaults: tuple[tuple[str, Callable[[Any], Any]], ...]
    #: per selected column, its result processor (reads: our UTCDateTime's zone)
    results: tuple[Processor | None, ...]
    dialect: Dialect

    def params(self, given: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The DBAPI parameters for ``given``: defaults filled, each value processed."""
        if self.fixed:
            given = {**self.fixed, **given}
        if self.defaults:
            given = {**given, **{key: fn(_NO_CONTEXT) for key, fn in self.defaults
                                 if key not in given}}
        try:
            if self.positional:
                return [given[name] if proc is None else proc(given[name])
                        for name, proc in self.binds]
            return {name: given[name] if proc is None else proc(given[name])
                    for name, proc in self.binds}
        except KeyError as missing:
            raise sa_exc.StatementError(
                f"A value is required for bind parameter {missing.args[0]!r}",
                self.sql, dict(given), sa_exc.InvalidRequestError(
                    f"A value is required for bind parameter {missing.args[0]!r}")) from None
        except Exception as err:  # a bind processor refused the value (a naive datetime)
            raise sa_exc.StatementError(str(err), self.sql, dict(given), err) from err

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        """A fetched row with the columns' result processors applied."""
        return tuple(value if proc is None else proc(value)
                     for value, proc in zip(raw, self.results, strict=True))


def _compile(statement: ClauseElement, dialect: Dialect) -> Compiled:
    """Compile as SQLAlchemy does, and refuse what this module does not reproduce."""
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    if compiled.escaped_bind_names:
        raise ValueError(f"prepared: bind names that need escaping in {compiled.string}")
    if any(b.expanding for b in compiled.bind_names):
        raise ValueError(f"prepared: expanding parameters in {compiled.string}")
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise ValueError(f"prepared: post-compile parameters in {compiled.string}")
    defaults = _defaults(compiled)
    # values the statement carries itself (a subquery's LIMIT 1)
    fixed = {name: bind.effective_value for bind, name in compiled.bind_names.items()
             if not bind.required and name not in dict(defaults)}
    return Compiled(sql=compiled.string, positional=compiled.positional,
                    binds=_binds(compiled), fixed=fixed, defaults=defaults,
                    results=_results(statement, compiled, dialect), dialect=dialect)


def _binds(compiled: SQLCompiler) -> tuple[tuple[str, Processor | None], ...]:
    """Each bind in the order the DBAPI takes them, with SQLAlchemy's processor."""
    processors: Mapping[str, Any] = compiled._bind_processors
    if compiled.positional:
        assert compiled.positiontup is not None
        names: Iterable[str] = compiled.positiontup
    else:
        names = dict.fromkeys(compiled.bind_names.values())
    binds = tuple((name, processors.get(name)) for name in names)
    if any(isinstance(proc, tuple) for _, proc in binds):
        raise ValueError(f"prepared: tuple-typed parameters in {compiled.string}")
    return binds


def _defaults(compiled: SQLCompiler) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    """The Python-side defaults SQLAlchemy computes per execution (``created_at``)."""
    out: list[tuple[str, Callable[[Any], Any]]] = []
    prefetch = [(c, c.default) for c in compiled.insert_prefetch]
    prefetch += [(c, c.onupdate) for c in compiled.update_prefetch]
    for column, default in prefetch:
        if default is None or not getattr(default, "is_callable", False):
            raise ValueError(f"prepared: column default of {column} is not a plain callable")
        out.append((compiled._within_exec_param_key_getter(column),
                    default.arg))  # type: ignore[attr-defined]
    return tuple(out)


def _results(statement: ClauseElement, compiled: SQLCompiler, dialect: Dialect
             ) -> tuple[Processor | None, ...]:
    """The result processors of a select's columns or of a RETURNING clause."""
    columns: Iterable[Any] = ()
    if not (compiled.isinsert or compiled.isupdate or compiled.isdelete):
        columns = getattr(statement, "selected_columns", ())
    elif compiled.effective_returning:
        columns = compiled.effective_returning
    return tuple(column.type._cached_result_processor(dialect, None) for column in columns)


_CONNECTION_KEY = "callflow.prepared.connection"


def connection_of(s: Session | Connection) -> Connection:
    """The connection of the session's current transaction, looked up once per
    transaction (``Session.connection()`` costs ~10 us, and the writer asked ~27 times
    a call). Kept in ``Session.info`` with the transaction it belongs to: a later
    transaction of the same session asks the session again."""
    if isinstance(s, Connection):
        return s
    transaction = s.get_transaction()
    cached = s.info.get(_CONNECTION_KEY)
    if transaction is not None and cached is not None and cached[0] is transaction:
        conn: Connection = cached[1]
        return conn
    conn = s.connection()
    s.info[_CONNECTION_KEY] = (s.get_transaction(), conn)
    return conn


class Prepared:
    """A Core statement run on the DBAPI cursor; compiled at first use per dialect."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: weakref.WeakKeyDictionary[Dialect, Compiled] = (
            weakref.WeakKeyDictionary())

    def compiled(self, dialect: Dialect) -> Compiled:
        found = self._compiled.get(dialect)
        if found is None:
            found = self._compiled[dialect] = _compile(self.statement, dialect)
        return found

    def execute(self, s: Session | Connection, params: Mapping[str, Any]) -> Any:
        """Run once; the DBAPI cursor (``rowcount``; ``rows``/``first`` to read)."""
        conn = connection_of(s)
        compiled = self.compiled(conn.dialect)
        values = compiled.params(params)

        def execute(cursor: Any) -> Any:
            cursor.execute(compiled.sql, values)
            return cursor
        return _run(conn, compiled, values, execute)

    def executemany(self, s: Session | Connection, rows: Sequence[Mapping[str, Any]]
                    ) -> None:
        """Run once per row of ``rows`` (one driver call), in order."""
        if not rows:
            return
        if len(rows) == 1:  # the driver's executemany costs more for a single row
            self.execute(s, rows[0])
            return
        conn = connection_of(s)
        compiled = self.compiled(conn.dialect)
        values = [compiled.params(row) for row in rows]
        _run(conn, compiled, values, lambda cursor: cursor.executemany(compiled.sql, values))

    def rows(self, s: Session | Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run and fetch every row, the columns' result processors applied."""
        conn = connection_of(s)
        compiled = self.compiled(conn.dialect)
        values = compiled.params(params)

        def fetch(cursor: Any) -> list[Any]:
            cursor.execute(compiled.sql, values)
            return list(cursor.fetchall())
        return [compiled.row(raw) for raw in _run(conn, compiled, values, fetch)]

    def first(self, s: Session | Connection, params: Mapping[str, Any]
              ) -> tuple[Any, ...] | None:
        """Run and fetch the first row (or None)."""
        found = self.rows(s, params)
        return found[0] if found else None

    def one(self, s: Session | Connection, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """Run and fetch exactly one row, raising as SQLAlchemy's ``Result.one`` does
        (an INSERT's RETURNING, an UPDATE that must find its row)."""
        found = self.rows(s, params)
        if len(found) != 1:
            raise (sa_exc.NoResultFound("No row was found when one was required")
                   if not found else sa_exc.MultipleResultsFound(
                       "Multiple rows were found when exactly one was required"))
        return found[0]


def _run(conn: Connection, compiled: Compiled, values: Any, call: Callable[[Any], Any]
         ) -> Any:
    """``call`` on a new cursor of the connection's DBAPI connection (its result); a
    driver error becomes SQLAlchemy's, and a lost connection is invalidated, as
    ``Connection.execute`` does."""
    dialect = compiled.dialect
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursor = dbapi_conn.cursor()
    try:
        return call(cursor)
    except dialect.loaded_dbapi.Error as err:
        gone = dialect.is_disconnect(err, dbapi_conn, cursor)
        if gone and not conn.invalidated:
            conn.invalidate(err)
        raise sa_exc.DBAPIError.instance(
            compiled.sql, values, err, dialect.loaded_dbapi.Error,
            connection_invalidated=gone, dialect=dialect) from err
