"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from callflow.errors import StoreError
from callflow.store.db import alembic_config, migration_options, open_store
from callflow.store.models import Base

APP_TABLES = set(Base.metadata.tables)

#: the newest revision: a fresh database must end there, whatever it is called
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_the_models_cover_the_whole_product() -> None:
    assert set(Base.metadata.tables) == {
        "agents", "agent_states", "agent_current", "calls", "call_offers", "call_holds",
        "call_events", "callback_tasks", "task_attempts", "alarms", "audit_log", "users",
        "recordings", "qa_reviews", "sessions", "journal_applied", "campaigns", "do_not_call",
        "wrapups", "call_verdicts", "customers", "customer_numbers", "tickets",
        "ticket_history", "survey_answers", "ticket_daily_checks"}


def test_upgrade_head_then_downgrade_base_then_upgrade_again(db_url: str) -> None:
    store = open_store(db_url, migrate=False)
    try:
        assert set(inspect(store.engine).get_table_names()) == set()
        store.upgrade()
        assert set(inspect(store.engine).get_table_names()) == APP_TABLES | {"alembic_version"}
        store.downgrade("base")
        assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
        store.upgrade()
        assert set(inspect(store.engine).get_table_names()) >= APP_TABLES
    finally:
        store.close()


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    store = open_store(db_url)
    try:
        with store.engine.connect() as conn:
            options = {k: v for k, v in migration_options().items() if k != "target_metadata"}
            context = MigrationContext.configure(conn, opts=options)
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
    finally:
        store.close()


def test_partial_unique_indexes_exist_in_the_database(db_url: str) -> None:
    store = open_store(db_url)
    try:
        indexes = {ix["name"]: ix for ix in inspect(store.engine).get_indexes("callback_tasks")}
        assert indexes["uq_callback_tasks_open_number_kind"]["unique"]
        indexes = {ix["name"]: ix for ix in inspect(store.engine).get_indexes("agent_states")}
        assert indexes["uq_agent_states_open"]["unique"]
    finally:
        store.close()


def test_opening_twice_is_a_no_op_migration(db_url: str) -> None:
    open_store(db_url).close()
    store = open_store(db_url)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    finally:
        store.close()


def test_a_database_newer_than_the_code_is_refused(db_url: str) -> None:
    store = open_store(db_url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffff'"))
    store.close()
    with pytest.raises(StoreError, match="ffffffff"):
        open_store(db_url)


def test_the_drift_check_sees_drift(db_url: str) -> None:
    """Guards the test above: a schema that differs from the models must show up."""
    store = open_store(db_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_calls_linkedid"))
            conn.execute(text("ALTER TABLE alarms ADD COLUMN stray INTEGER"))
            if store.dialect == "postgresql":
                conn.execute(text("ALTER TABLE calls ALTER COLUMN entered_at "
                                  "TYPE TIMESTAMP WITHOUT TIME ZONE"))
        with store.engine.connect() as conn:
            options = {k: v for k, v in migration_options().items() if k != "target_metadata"}
            diff = compare_metadata(MigrationContext.configure(conn, opts=options), Base.metadata)
        kinds = {d[0][0] if isinstance(d, list) else d[0] for d in diff}
        assert {"add_index", "remove_column"} <= kinds
        if store.dialect == "postgresql":
            assert "modify_type" in kinds
    finally:
        store.close()


def test_engines_starting_together_migrate_once(db_url: str) -> None:
    """Several processes (engine, API, CLI) may open a fresh database at the same moment."""
    start = threading.Barrier(4)

    def opener(_: int) -> str:
        start.wait()
        store = open_store(db_url)
        try:
            with store.engine.connect() as conn:
                query = text("SELECT version_num FROM alembic_version")
                version: str = conn.execute(query).scalar_one()
                return version
        finally:
            store.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(opener, range(4))) == [HEAD] * 4
